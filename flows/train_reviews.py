"""Prefect flow `train-reviews`: (pretrain →) ingest → clean → tokenize → split → vocab → train → evaluate → register.
(`pretrain`, cached like every stage, runs when `reviews.train.init: pretrained` and `reviews.base_model`
is its output.)

    python -m flows.train_reviews [--params params.yaml] [--set reviews.model.cell=lstm ...]

The same stage functions as `train-lyrics` and `dvc repro` (with task="reviews"), so all give the
same artifacts. The flow run and its MLflow run carry each other's ids (MLflow tag
`prefect.flow_run_id`, Prefect artifact `mlflow-run-reviews`).
"""

from typing import Any

from prefect import flow
from prefect.states import Failed, State

from flows.cli import parse_flow_args, run_flow
from flows.stages import (
    StageRuns,
    clean_task,
    flow_run_tags,
    ingest_task,
    preflight_task,
    pretrain_task,
    pretrains_base,
    split_task,
    stages_summary,
    tokenize_task,
    train_evaluate_register,
    vocab_task,
)
from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.common.params import load_params, task_section

TASK = "reviews"


@flow(name="train-reviews", log_prints=True)
def train_reviews(
    params_file: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    refresh: bool = False,
    check_inputs_first: bool = True,
) -> dict | State:
    """Run the reviews pipeline; `overrides` maps dotted params keys to values, e.g.
    {"reviews.model.cell": "lstm", "reviews.input.path": "my_reviews.csv"}.
    `refresh=True` reruns every stage (StageCache reads it from the flow run's parameters).
    `check_inputs_first`: the pre-flight check as the first task (a served deployment's run); the
    command line checks before Prefect starts instead. Bad input fails the run with its one line."""
    try:
        params = load_params(params_file, overrides)
        task_section(params, TASK)
        stages = StageRuns(params, TASK)
        if check_inputs_first:
            preflight_task(params, TASK, refresh)
        if pretrains_base(params, TASK):
            stages.run(pretrain_task, extra_tags=flow_run_tags())
        for stage in (ingest_task, clean_task, tokenize_task, split_task, vocab_task):
            stages.run(stage)
        return train_evaluate_register(stages, artifact_key="mlflow-run-reviews")
    except PipelineError as exc:
        return Failed(message=str(exc))


def main() -> None:
    args, overrides, params = parse_flow_args("Run the train-reviews flow on Prefect (ephemeral API by default).")
    result = run_flow(train_reviews, TASK, args, overrides, params)
    m, reg = result["metrics"], result["registered"]
    print(
        f"test accuracy {m['test_accuracy']:.4f} macro-F1 {m['test_macro_f1']:.4f} "
        f"(TF-IDF baseline {m['baseline_accuracy']:.4f} / {m['baseline_macro_f1']:.4f}); "
        f"{reg['model_name']} v{reg['version']}: {reg['reason']}"
    )
    print(stages_summary(result["stages"]))


if __name__ == "__main__":
    run_cli(main)
