"""The command line every stage shares:
`python -m tasks.<stage> [--task lyrics|reviews] [--params FILE] [--set KEY=VALUE ...]`."""

import argparse
import logging
import sys
from collections.abc import Callable

from tasks.common.errors import PipelineError
from tasks.common.params import TASKS, load_params, parse_set_args


def run_cli(main: Callable[[], object]) -> None:
    """Run `main`; a PipelineError becomes `error: ...` on stderr and exit status 2, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def stage_main(run: Callable, doc: str | None, tasks: tuple[str, ...] = TASKS) -> None:
    """Parse the shared flags, load and validate params, then call the stage's `run(params, task=...)`.
    `tasks`: the tasks this stage serves; the first is the default of `--task`."""

    def main() -> None:
        parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
        parser.add_argument("--task", choices=tasks, default=tasks[0], help=f"which pipeline (default: {tasks[0]})")
        parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        parser.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override one param, e.g. --set lyrics.model.cell=gru (repeatable)",
        )
        args = parser.parse_args()
        run(load_params(args.params, parse_set_args(args.set)), task=args.task)

    run_cli(main)
