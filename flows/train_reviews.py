"""Prefect flow `train-reviews`: ingest → clean → tokenize → split → vocab → train → evaluate → register.

    python -m flows.train_reviews [--params params.yaml] [--set reviews.model.cell=lstm ...]

The same stage functions as `train-lyrics` and `dvc repro` (with task="reviews"), so all give the
same artifacts. The flow run and its MLflow run carry each other's ids (MLflow tag
`prefect.flow_run_id`, Prefect artifact `mlflow-run-reviews`).
"""

from typing import Any

from prefect import flow

from flows.cli import parse_flow_args
from flows.scaleout import with_task_runner
from flows.stages import (
    StageRuns,
    clean_task,
    ingest_task,
    is_fresh,
    split_task,
    stages_summary,
    tokenize_task,
    train_evaluate_register,
    vocab_task,
)
from tasks.common.cli import run_cli
from tasks.common.params import load_params, task_section
from tasks.reviews.ingest import ingest

TASK = "reviews"


@flow(name="train-reviews", log_prints=True)
def train_reviews(
    params_file: str = "params.yaml", overrides: dict[str, Any] | None = None, refresh: bool = False
) -> dict:
    """Run the reviews pipeline; `overrides` maps dotted params keys to values, e.g.
    {"reviews.model.cell": "lstm", "reviews.input.path": "my_reviews.csv"}.
    `refresh=True` reruns every stage (StageCache reads it from the flow run's parameters)."""
    params = load_params(params_file, overrides)
    task_section(params, TASK)
    stages = StageRuns(params, TASK)
    for stage in (ingest_task, clean_task, tokenize_task, split_task, vocab_task):
        stages.run(stage)
    return train_evaluate_register(stages, artifact_key="mlflow-run-reviews")


def main() -> None:
    args, overrides, params = parse_flow_args("Run the train-reviews flow on Prefect (ephemeral API by default).")
    # Fail on bad params or bad input before Prefect starts, with one line and no traceback
    # (reading the corpus takes seconds: skipped when ingest is cached from a run that read it).
    if args.refresh or not is_fresh(params, f"{TASK}-ingest"):
        ingest(task_section(params, TASK).input)
    result = with_task_runner(train_reviews, params)(params_file=args.params, overrides=overrides, refresh=args.refresh)
    m, reg = result["metrics"], result["registered"]
    print(
        f"test accuracy {m['test_accuracy']:.4f} macro-F1 {m['test_macro_f1']:.4f} "
        f"(TF-IDF baseline {m['baseline_accuracy']:.4f} / {m['baseline_macro_f1']:.4f}); "
        f"{reg['model_name']} v{reg['version']}: {reg['reason']}"
    )
    print(stages_summary(result["stages"]))


if __name__ == "__main__":
    run_cli(main)
