"""The command line both flows share: `--params`, repeatable `--set KEY=VALUE`, `--refresh`."""

import argparse

from prefect.exceptions import FailedRun

from flows.scaleout import with_task_runner
from flows.stages import check_inputs
from tasks.common.errors import PipelineError
from tasks.common.params import Params, load_params, parse_set_args


def parse_flow_args(description: str) -> tuple[argparse.Namespace, dict, Params]:
    """(args, overrides, params): params loaded and validated before Prefect starts, so a bad value
    is one line and no traceback."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param (repeatable)")
    parser.add_argument("--refresh", "--force", action="store_true", help="rerun every stage, ignoring cached results")
    args = parser.parse_args()
    overrides = parse_set_args(args.set)
    return args, overrides, load_params(args.params, overrides)


def run_flow(flow, task: str, args: argparse.Namespace, overrides: dict, params: Params) -> dict:
    """Check the inputs, then run `flow` on the task runner params ask for. Bad input fails here,
    before Prefect starts, as one line; a flow run that failed on bad input later (its state message
    is that line) becomes the same one-line error."""
    check_inputs(params, task, args.refresh)
    try:
        return with_task_runner(flow, params)(
            params_file=args.params, overrides=overrides, refresh=args.refresh, check_inputs_first=False
        )
    except FailedRun as exc:
        raise PipelineError(str(exc)) from None
