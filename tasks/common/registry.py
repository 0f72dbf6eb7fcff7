"""The MLflow model registry: log a pyfunc on raw input in the pipeline's run, register it with
lineage tags, and move the alias only when the new version beats the current champion on the same
test split."""

import logging
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


def register_version(
    params,
    task_params,
    python_model,
    artifacts: dict,
    metrics: dict,
    score_key: str,
    lower_is_better: bool,
    input_example: pd.DataFrame,
    output_example: pd.DataFrame,
    inference_params: dict | None,
    extra_tags: dict[str, str],
    task: str = "lyrics",
) -> dict:
    """Log + register a pyfunc in the pipeline's MLflow run, tag it, and gate the alias on `score_key`."""
    cfg = task_params.registry
    tracking.configure(params, task)
    client = mlflow.MlflowClient()
    signature = infer_signature(input_example, output_example, params=inference_params)
    with mlflow.start_run(run_id=tracking.load_run_id(task_params.train.output_dir)):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            artifacts=artifacts,
            code_paths=[str(TASKS_DIR)],
            signature=signature,
            input_example=input_example,
            registered_model_name=cfg.model_name,
            pip_requirements=[f"{p}=={version(p).split('+')[0]}" for p in RUNTIME_PACKAGES],
        )
    mv_version = str(info.registered_model_version)
    tags = {
        **lineage_tags(params, task_params),
        **extra_tags,
        "score_metric": score_key,
        "score": str(metrics[score_key]),
        "eval_set_hash": metrics["eval_set_hash"],
    }
    for key, value in tags.items():
        client.set_model_version_tag(cfg.model_name, mv_version, key, value)
    promote, reason = should_promote(
        metrics[score_key],
        metrics["eval_set_hash"],
        current_champion(client, cfg.model_name, cfg.alias),
        lower_is_better,
    )
    if promote:
        client.set_registered_model_alias(cfg.model_name, cfg.alias, mv_version)
    log.info(
        "%s v%s registered; alias %s %s: %s",
        cfg.model_name,
        mv_version,
        cfg.alias,
        "moved to it" if promote else "unchanged",
        reason,
    )
    result = {
        "model_name": cfg.model_name,
        "version": mv_version,
        "model_uri": info.model_uri,
        "promoted": promote,
        "reason": reason,
        score_key: metrics[score_key],
    }
    write_json(result, cfg.output)
    return result
