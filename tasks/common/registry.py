"""The MLflow model registry: log a pyfunc on raw input in the pipeline's run, register it with
lineage tags, and move the alias only when the new version beats the current champion on the same
test split."""

import logging
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from tasks.common import tracking
from tasks.common.atomic import write_json
from tasks.common.lineage import lineage_tags

log = logging.getLogger(__name__)
TASKS_DIR = Path(__file__).resolve().parents[1]  # the `tasks` package, shipped inside the model
# What the packaged model needs to run anywhere `mlflow models serve` can install it.
# What the packaged model needs to run anywhere `mlflow models serve` can install it.
RUNTIME_PACKAGES = ["torch", "jieba", "pandas", "pyarrow", "pydantic", "pyyaml", "opencc", "mlflow"]


def should_promote(
    new_score: float, new_eval_set: str, champion: dict | None, lower_is_better: bool
) -> tuple[bool, str]:
    """Decide whether the new version takes the alias. `champion` holds the current champion's
    `score` and `eval_set_hash` tags, or is None when there is none. Returns (promote, reason)."""
    if champion is None:
        return True, "no champion yet"
    if champion.get("eval_set_hash") != new_eval_set:
        return True, (
            f"champion v{champion['version']} was scored on another test split or vocabulary "
            f"({champion.get('eval_set_hash')} != {new_eval_set}); its score is not comparable, "
            "so the new version becomes the champion of this split"
        )
    old = float(champion["score"])
    better = new_score < old if lower_is_better else new_score > old
    verdict = "beats" if better else "does not beat"
    return better, f"{new_score:.4g} {verdict} champion v{champion['version']}'s {old:.4g} on the same test split"


def current_champion(client: mlflow.MlflowClient, name: str, alias: str) -> dict | None:
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None  # no registered model or no alias yet
    return {"version": mv.version, "score": mv.tags.get("score"), "eval_set_hash": mv.tags.get("eval_set_hash")}


@dataclass(frozen=True)
class ServedModel:
    """What a task registers: its pyfunc, an example of its raw input and output (the signature),
    the per-call inference params, and the test metric that gates the alias."""

    python_model: mlflow.pyfunc.PythonModel
    input_example: pd.DataFrame
    output_example: pd.DataFrame
    inference_params: dict | None
    score_key: str
    lower_is_better: bool


def log_pyfunc(task_params, served: ServedModel, artifacts: dict):
    """Log the pyfunc (with the `tasks` code inside it) to the pipeline's run and register it."""
    signature = infer_signature(served.input_example, served.output_example, params=served.inference_params)
    with mlflow.start_run(run_id=tracking.load_run_id(task_params.train.output_dir)):
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=served.python_model,
            artifacts=artifacts,
            code_paths=[str(TASKS_DIR)],
            signature=signature,
            input_example=served.input_example,
            registered_model_name=task_params.registry.model_name,
            pip_requirements=[f"{p}=={version(p).split('+')[0]}" for p in RUNTIME_PACKAGES],
        )


def register_version(
    params, task_params, served: ServedModel, artifacts: dict, metrics: dict, extra_tags: dict[str, str], task: str
) -> dict:
    """Log + register a pyfunc in the pipeline's MLflow run, tag it with its lineage and score, and
    gate the alias on `served.score_key`."""
    cfg, score = task_params.registry, metrics[served.score_key]
    tracking.configure(params, task)
    client = mlflow.MlflowClient()
    info = log_pyfunc(task_params, served, artifacts)
    mv_version = str(info.registered_model_version)
    tags = {**lineage_tags(params, task_params), **extra_tags, "score_metric": served.score_key, "score": str(score)}
    for key, value in {**tags, "eval_set_hash": metrics["eval_set_hash"]}.items():
        client.set_model_version_tag(cfg.model_name, mv_version, key, value)
    champion = current_champion(client, cfg.model_name, cfg.alias)
    promote, reason = should_promote(score, metrics["eval_set_hash"], champion, served.lower_is_better)
    if promote:
        client.set_registered_model_alias(cfg.model_name, cfg.alias, mv_version)
    moved = "moved to it" if promote else "unchanged"
    log.info("%s v%s registered; alias %s %s: %s", cfg.model_name, mv_version, cfg.alias, moved, reason)
    result = {"model_name": cfg.model_name, "version": mv_version, "model_uri": info.model_uri, "promoted": promote}
    result.update({"reason": reason, served.score_key: score})
    write_json(result, cfg.output)
    return result
