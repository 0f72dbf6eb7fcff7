"""Prefect flow `train-lyrics`: pretrain → clean → tokenize → split → vocab → train → evaluate → register.
(`pretrain`, cached like every stage, runs when `lyrics.base_model` is its output.)

    python -m flows.train_lyrics [--params params.yaml] [--set lyrics.model.cell=gru ...]

The stages are the same functions `dvc repro` runs, so both give the same artifacts. The flow run
and its MLflow run carry each other's ids (MLflow tag `prefect.flow_run_id`, Prefect artifact
`mlflow-run`).
"""

from typing import Any

from prefect import flow
from prefect.states import Failed, State

from flows.cli import parse_flow_args, run_flow
from flows.stages import (
    StageRuns,
    clean_task,
    flow_run_tags,
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
from tasks.common.params import load_params


@flow(name="train-lyrics", log_prints=True)
def train_lyrics(
    params_file: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    refresh: bool = False,
    check_inputs_first: bool = True,
) -> dict | State:
    """Run the lyrics pipeline; `overrides` maps dotted params keys to values, e.g.
    {"lyrics.model.cell": "gru", "lyrics.train.epochs": 5}.
    `refresh=True` reruns every stage (StageCache reads it from the flow run's parameters).
    `check_inputs_first`: the pre-flight check as the first task (a served deployment's run); the
    command line checks before Prefect starts instead. Bad input fails the run with its one line."""
    try:
        stages = StageRuns(load_params(params_file, overrides), "lyrics")
        if check_inputs_first:
            preflight_task(stages.params, "lyrics", refresh)
        if pretrains_base(stages.params, "lyrics"):
            stages.run(pretrain_task, extra_tags=flow_run_tags())
        for stage in (clean_task, tokenize_task, split_task, vocab_task):
            stages.run(stage)
        return train_evaluate_register(stages, artifact_key="mlflow-run")
    except PipelineError as exc:
        return Failed(message=str(exc))


def main() -> None:
    args, overrides, params = parse_flow_args("Run the train-lyrics flow on Prefect (ephemeral API by default).")
    result = run_flow(train_lyrics, "lyrics", args, overrides, params)
    m = result["metrics"]
    print(
        f"test perplexity {m['test_perplexity']:.1f} (Kneser-Ney {m['kneser_ney_perplexity']:.1f}), "
        f"bits/char {m['test_bits_per_char']:.3f} (Kneser-Ney {m['kneser_ney_bits_per_char']:.3f}, "
        f"char Kneser-Ney {m['char_kneser_ney_bits_per_char']:.3f}), model alone; "
        f"{result['registered']['model_name']} v{result['registered']['version']}: {result['registered']['reason']}"
    )
    print(stages_summary(result["stages"]))


if __name__ == "__main__":
    run_cli(main)
