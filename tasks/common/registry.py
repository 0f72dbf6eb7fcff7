"""The MLflow model registry: log a pyfunc on raw input in the pipeline's run, register it with
lineage tags, and move the alias only when the new version beats the current champion on the same
test split. Registering is idempotent per training run and model file (a retry reuses the version);
a score that is not a finite number never takes the alias. Once the alias is decided, the version's
description is its model card (tasks/common/model_card.py), also `model_card.md` in the run and in
the task's reports folder."""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from tasks.common import tracking
from tasks.common.atomic import write_json, write_text
from tasks.common.lineage import file_md5, lineage_tags
from tasks.common.model_card import Decision, TaskCard, render

log = logging.getLogger(__name__)
TASKS_DIR = Path(__file__).resolve().parents[1]  # the `tasks` package, shipped inside the model
# What the packaged model needs to run anywhere `mlflow models serve` can install it.
RUNTIME_PACKAGES = ["torch", "jieba", "pandas", "pyarrow", "pydantic", "pyyaml", "opencc", "mlflow"]
# MLflow's SQL stores hold a version's description in a String(5000) column (PostgreSQL and MySQL
# enforce it); a longer card is cut there and kept whole in the run's model_card.md.
DESCRIPTION_LIMIT = 5000


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
    rescored: float | None = None,
) -> tuple[bool, str]:
    """Decide whether the new version takes the alias, before anything is written. `champion` holds
    the current champion's `version`, `score` and `eval_set` tags (what its score was measured on),
    or is None when there is none; `new_version`: the version a retried register reuses (None: a
    version yet to be created); `rescored`: the champion's score re-measured on the new version's
    test set, when it was scored on another one (None: it could not be). Returns (promote, reason):
    promote means the alias points at the new version afterwards.

    A new score that is not a finite number never promotes. A champion without a usable score
    cannot be compared: the new version replaces it. A champion scored on another test set is
    compared by its re-measured score; when that is missing the alias stays where it is, with the
    reason and the fix (scores of different test sets are never compared, nor taken as a win)."""
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
    where = "on the same test set"
    if champion.get("eval_set") != new_eval_set:
        if usable_score(rescored) is None:
            return False, (
                f"champion v{champion['version']} was scored on another test set ({champion.get('eval_set')} != "
                f"{new_eval_set}) and could not be re-scored on this one, so the two cannot be ranked; the alias "
                "stays (move it by hand if the new version should serve)"
            )
        old, where = rescored, "re-scored on this test set"
    if old is None:
        return True, (
            f"champion v{champion['version']} has no usable score tag ({champion.get('score')!r}), so it cannot "
            f"be compared; the new version ({new_score:.4g}) replaces it (move the alias back by hand to keep it)"
        )
    better = new_score < old if lower_is_better else new_score > old
    verdict = "beats" if better else "does not beat"
    return better, f"{new_score:.4g} {verdict} champion v{champion['version']}'s {old:.4g} {where}"


def current_champion(client: mlflow.MlflowClient, name: str, alias: str, comparable_on: str) -> dict | None:
    """The alias holder's version, score and `eval_set` (its `comparable_on` tag), or None."""
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None  # no registered model or no alias yet
    return {"version": mv.version, "score": mv.tags.get("score"), "eval_set": mv.tags.get(comparable_on)}


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
    the per-call inference params, the test metric that gates the alias, and its parts of the
    model card (None: no card)."""

    python_model: mlflow.pyfunc.PythonModel
    input_example: pd.DataFrame
    output_example: pd.DataFrame
    inference_params: dict | None
    score_key: str
    lower_is_better: bool
    card: TaskCard | None = None
    # The metrics key naming what the score was measured on; scores are compared only when it matches.
    comparable_on: str = "eval_set_hash"
    # champion's version → its score on this run's test set (None: it cannot be re-scored), for a
    # champion measured on another one; None: scores of other test sets are never compared.
    rescore: Callable[[str], float | None] | None = None


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


def publish_card(client: mlflow.MlflowClient, markdown: str, decision: Decision, run_id: str, task_params) -> None:
    """The model card as the version's description, as `model_card.md` in its run's artifacts, and
    as `<evaluate.output_dir>/model_card.md` (reports/<task>/, beside metrics.json)."""
    description = markdown
    if len(markdown) > DESCRIPTION_LIMIT:
        note = "\n\n… (cut to fit the registry; the whole card is `model_card.md` in the run's artifacts)\n"
        description = markdown[: DESCRIPTION_LIMIT - len(note)] + note
    client.update_model_version(decision.model_name, decision.version, description=description)
    client.log_text(run_id, markdown, "model_card.md")
    write_text(markdown, Path(task_params.evaluate.output_dir) / "model_card.md")


def champion_rescored(served: ServedModel, champion: dict | None, eval_set: str, existing) -> float | None:
    """The champion's score on this run's test set when it was measured on another one and the task
    can re-score it; None otherwise (a failure to re-score is logged, and the alias then stays)."""
    if champion is None or champion.get("eval_set") == eval_set or served.rescore is None:
        return None
    if existing is not None and str(existing.version) == str(champion["version"]):
        return None
    try:
        rescored = served.rescore(str(champion["version"]))
    except Exception as exc:  # any failure means "cannot be compared", never a crash of register
        log.warning("champion v%s could not be re-scored on this test set: %s", champion["version"], exc)
        return None
    log.info("champion v%s re-scored on this test set: %s %.4g", champion["version"], served.score_key, rescored)
    return rescored


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
    eval_set = metrics[served.comparable_on]
    tags = {
        **lineage_tags(params, task_params),
        **extra_tags,
        "score_metric": served.score_key,
        "score": str(score),
        "eval_set_hash": metrics["eval_set_hash"],
        served.comparable_on: eval_set,
        "model_md5": model_md5,
    }
    existing = version_from_run(client, cfg.model_name, run_id, model_md5)
    champion = current_champion(client, cfg.model_name, cfg.alias, served.comparable_on)
    rescored = champion_rescored(served, champion, eval_set, existing)
    promote, reason = should_promote(
        score, eval_set, champion, served.lower_is_better, existing and str(existing.version), rescored
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
    if served.card is not None:  # why the alias moved or not is known now: the card says it
        before = champion and str(champion["version"])
        decision = Decision(cfg.model_name, mv_version, cfg.alias, promote, reason, served.score_key, score, before)
        lineage = {**mv.tags, **tags}  # a reused version keeps the tags of the run that registered it (Prefect's)
        publish_card(client, render(served.card, decision, lineage, run_id), decision, run_id, task_params)
    result = {
        "model_name": cfg.model_name,
        "version": mv_version,
        "model_uri": f"models:/{cfg.model_name}/{mv_version}",
    }
    result.update({"promoted": promote, "reason": reason, served.score_key: score})
    write_json(result, cfg.output)
    return result
