"""The MLflow model registry: log a pyfunc on raw input in the pipeline's run, register it with
lineage tags, and move the alias only when the new version beats the current champion on the same
test split. Registering is idempotent per training run and model file (a retry reuses the version);
a score that is not a finite number never takes the alias."""

import logging
import math
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from tasks.common import tracking
from tasks.common.atomic import write_json
from tasks.common.lineage import file_md5, lineage_tags

log = logging.getLogger(__name__)
TASKS_DIR = Path(__file__).resolve().parents[1]  # the `tasks` package, shipped inside the model
# What the packaged model needs to run anywhere `mlflow models serve` can install it.
RUNTIME_PACKAGES = ["torch", "jieba", "pandas", "pyarrow", "pydantic", "pyyaml", "opencc", "mlflow"]


def usable_score(value) -> float | None:
    """A score tag (or metric) as a finite float; None when it is missing, not a number, NaN or inf."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


def should_promote(
    new_score: float,
    new_eval_set: str,
    champion: dict | None,
    lower_is_better: bool,
    new_version: str | None = None,
) -> tuple[bool, str]:
    """Decide whether the new version takes the alias, before anything is written. `champion` holds
    the current champion's `version`, `score` and `eval_set_hash` tags, or is None when there is
    none; `new_version`: the version a retried register reuses (None: a version yet to be created).
    Returns (promote, reason): promote means the alias points at the new version afterwards.

    A new score that is not a finite number never promotes. A champion without a usable score, or
    scored on another test split, cannot be compared: the new version replaces it, and the reason
    says so (the alias can be moved back by hand)."""
    if champion is not None and new_version is not None and str(champion["version"]) == str(new_version):
        return True, f"v{new_version}, registered from this training run before, already holds the alias"
    if usable_score(new_score) is None:
        return False, (
            f"the new score {new_score!r} is not a finite number, so the version cannot be ranked; "
            "it is registered but never takes the alias"
        )
    if champion is None:
        return True, "no champion yet"
    old = usable_score(champion.get("score"))
    if old is None:
        return True, (
            f"champion v{champion['version']} has no usable score tag ({champion.get('score')!r}), so it cannot "
            f"be compared; the new version ({new_score:.4g}) replaces it (move the alias back by hand to keep it)"
        )
    if champion.get("eval_set_hash") != new_eval_set:
        return True, (
            f"champion v{champion['version']} was scored on another test split or vocabulary "
            f"({champion.get('eval_set_hash')} != {new_eval_set}); its score is not comparable, "
            "so the new version becomes the champion of this split"
        )
    better = new_score < old if lower_is_better else new_score > old
    verdict = "beats" if better else "does not beat"
    return better, f"{new_score:.4g} {verdict} champion v{champion['version']}'s {old:.4g} on the same test split"


def current_champion(client: mlflow.MlflowClient, name: str, alias: str) -> dict | None:
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None  # no registered model or no alias yet
    return {"version": mv.version, "score": mv.tags.get("score"), "eval_set_hash": mv.tags.get("eval_set_hash")}


def version_from_run(client: mlflow.MlflowClient, name: str, run_id: str, model_md5: str):
    """The version of `name` already registered from this training run with this model artifact
    (a retried or rerun register), or None."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except mlflow.exceptions.MlflowException:
        return None  # no registered model yet
    same = [mv for mv in versions if mv.tags.get("model_md5") == model_md5]
    return min(same, key=lambda mv: int(mv.version), default=None)


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


def log_pyfunc(served: ServedModel, artifacts: dict, run_id: str):
    """Log the pyfunc (with the `tasks` code inside it) to the pipeline's run."""
    signature = infer_signature(served.input_example, served.output_example, params=served.inference_params)
    with mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=served.python_model,
            artifacts=artifacts,
            code_paths=[str(TASKS_DIR)],
            signature=signature,
            input_example=served.input_example,
            pip_requirements=[f"{p}=={version(p).split('+')[0]}" for p in RUNTIME_PACKAGES],
        )


def register_version(
    params, task_params, served: ServedModel, artifacts: dict, metrics: dict, extra_tags: dict[str, str], task: str
) -> dict:
    """Register a pyfunc from the pipeline's MLflow run, tagged with its lineage and score, and gate
    the alias on `served.score_key`. The promotion is decided before anything is written, and a
    retry (the flow's task retries, a DVC rerun) of the same training run with the same model
    reuses the version registered from it instead of adding a duplicate."""
    cfg, score = task_params.registry, metrics[served.score_key]
    tracking.configure(params, task)
    client = mlflow.MlflowClient()
    run_id = tracking.load_run_id(task_params.train.output_dir)
    model_md5 = file_md5(artifacts["checkpoint"])
    tags = {
        **lineage_tags(params, task_params),
        **extra_tags,
        "score_metric": served.score_key,
        "score": str(score),
        "eval_set_hash": metrics["eval_set_hash"],
        "model_md5": model_md5,
    }
    existing = version_from_run(client, cfg.model_name, run_id, model_md5)
    champion = current_champion(client, cfg.model_name, cfg.alias)
    promote, reason = should_promote(
        score, metrics["eval_set_hash"], champion, served.lower_is_better, existing and str(existing.version)
    )
    if existing is None:
        info = log_pyfunc(served, artifacts, run_id)
        # Tags go in with the version (one write): no version without its score if a step fails.
        mv = mlflow.register_model(info.model_uri, cfg.model_name, tags=tags)
    else:
        mv = existing
        for key, value in tags.items():  # this evaluation's score and lineage
            if mv.tags.get(key) != value:
                client.set_model_version_tag(cfg.model_name, mv.version, key, value)
        log.info(
            "%s v%s was registered from run %s before: reused, not registered again", cfg.model_name, mv.version, run_id
        )
    mv_version = str(mv.version)
    if promote and (champion is None or str(champion["version"]) != mv_version):
        client.set_registered_model_alias(cfg.model_name, cfg.alias, mv_version)
    moved = "points at it" if promote else "unchanged"
    log.info("%s v%s registered; alias %s %s: %s", cfg.model_name, mv_version, cfg.alias, moved, reason)
    result = {
        "model_name": cfg.model_name,
        "version": mv_version,
        "model_uri": f"models:/{cfg.model_name}/{mv_version}",
    }
    result.update({"promoted": promote, "reason": reason, served.score_key: score})
    write_json(result, cfg.output)
    return result
