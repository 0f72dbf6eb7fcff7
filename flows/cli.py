"""The command line both flows share: `--params`, repeatable `--set KEY=VALUE`, `--refresh`."""

import argparse

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
