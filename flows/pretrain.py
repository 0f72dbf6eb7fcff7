"""Prefect flow `pretrain-base`: the pretrain stage alone (the general-Chinese base model that
`train-lyrics` fine-tunes from), cached like every stage: a rerun with nothing changed is a no-op.

    python -m flows.pretrain [--params params.yaml] [--set pretrain.train.epochs=2 ...]

`make run` runs it when there is no lyrics corpus yet, so the base is ready when one arrives;
`train-lyrics` runs the same cached task first.
"""

from typing import Any

from prefect import flow
from prefect.exceptions import FailedRun
from prefect.states import Failed

from flows.cli import parse_flow_args
from flows.scaleout import with_task_runner
from flows.stages import StageRuns, flow_run_tags, pretrain_task, stages_summary
from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.common.params import load_params


@flow(name="pretrain-base", log_prints=True)
def pretrain_base(params_file: str = "params.yaml", overrides: dict[str, Any] | None = None, refresh: bool = False):
    """Pretrain (or reuse) the base model; `refresh=True` retrains it. Bad input fails the run with
    its one line."""
    try:
        stages = StageRuns(load_params(params_file, overrides), "lyrics")
        result = stages.run(pretrain_task, extra_tags=flow_run_tags())
        return {**(result or {}), "stages": stages.outcomes}
    except PipelineError as exc:
        return Failed(message=str(exc))


def main() -> None:
    args, overrides, params = parse_flow_args("Run the pretrain-base flow on Prefect (ephemeral API by default).")
    try:
        result = with_task_runner(pretrain_base, params)(
            params_file=args.params, overrides=overrides, refresh=args.refresh
        )
    except FailedRun as exc:  # failed on bad input: its state message is the one line
        raise PipelineError(str(exc)) from None
    m = result.get("metrics") or {}
    if m:
        print(f"base model: validation {m['val_bits_per_char']:.3f} bits/char (perplexity {m['val_perplexity']:.1f})")
    print(stages_summary(result["stages"]))


if __name__ == "__main__":
    run_cli(main)
