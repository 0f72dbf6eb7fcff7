"""The stage functions of `tasks/` as Prefect tasks, shared by both flows (`task=` picks the pipeline).

Stages are cached with Prefect's own caching (`StageCache` below, persisted results): a stage is
skipped, in state `Cached`, when its input files, params keys and code hash as in its last run and
its outputs are still the files that run wrote. What a stage reads and writes comes from dvc.yaml
(`tasks/fingerprint.py`), the list `dvc repro` uses too.
"""

import hashlib
import importlib
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import CachePolicy
from prefect.runtime import flow_run
from prefect.settings import get_current_settings
from prefect.transactions import get_transaction

from flows.fingerprint import fingerprint, outputs_state, stage_spec
from tasks.common.atomic import write_json
from tasks.common.errors import PipelineError
from tasks.common.params import experiment_name

log = logging.getLogger(__name__)

# Stage outcomes ("ran" / "cached") per flow run id, for the flow's summary: the cache policy marks
# a stage "cached", its function "ran" if it runs. Both run in the flow's process (stages are
# called directly from the flow).
OUTCOMES: dict[str, dict[str, str]] = {}


def note_outcome(name: str, outcome: str) -> None:
    OUTCOMES.setdefault(str(flow_run.id), {})[name] = outcome


def records_dir() -> Path:
    """Where each stage's last run is recorded (cache key, input fingerprint, output hashes): beside
    Prefect's result storage under PREFECT_HOME, one folder per project directory."""
    project = hashlib.sha256(str(Path.cwd().resolve()).encode()).hexdigest()[:16]
    return Path(get_current_settings().home) / "stage-records" / project


def read_record(stage: str) -> dict | None:
    try:
        return json.loads((records_dir() / f"{stage}.json").read_text())
    except (OSError, ValueError):
        return None


def write_record(stage: str, record: dict) -> None:
    write_json(record, records_dir() / f"{stage}.json")


def fresh_key(spec, fp: str) -> str | None:
    """The key of the stage's last run if its inputs fingerprint as `fp` and its outputs are still
    the files that run wrote; else None."""
    record = read_record(spec.name)
    if record and record.get("fingerprint") == fp and record.get("outputs") == outputs_state(spec):
        return record["key"]
    return None


def is_fresh(params, stage: str) -> bool:
    """Whether stage `stage` (e.g. `reviews-ingest`) would be cached now (barring a refresh)."""
    try:
        spec = stage_spec(params, stage)
    except PipelineError:
        return False
    return fresh_key(spec, fingerprint(spec)) is not None


@dataclass
class StageCache(CachePolicy):
    """Cache key of a stage run. The key is reused only when the stage's input fingerprint equals the
    one recorded at its last successful run AND its outputs still hash as recorded then; otherwise
    (first run, a changed input/param/code, a deleted or edited output, `refresh=True` on the flow)
    a fresh key is issued, so Prefect finds no cached result and the stage runs. Keys cannot depend
    on outputs directly: they are computed before the stage writes them."""

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> str | None:
        name = task_ctx.task.name
        stage = f"{inputs.get('task', 'lyrics')}-{name}"  # dvc.yaml's stage name, e.g. lyrics-train
        note_outcome(name, "cached")  # until its function runs
        try:
            spec = stage_spec(inputs["params"], stage)
        except PipelineError as exc:
            log.warning("%s runs uncached: %s", stage, exc)
            return None
        fp = fingerprint(spec)
        if not flow_parameters.get("refresh") and (key := fresh_key(spec, fp)):
            return key
        key = f"{stage}-{fp[:16]}-{uuid.uuid4().hex[:12]}"
        write_record(stage, {"fingerprint": fp, "key": key, "outputs": None})  # outputs: filled in after the run
        return key


def stage_function(name: str):
    """`tasks.<name>.run` as the task's function. The module is imported at the first call, so a
    fully cached flow run never loads torch, scikit-learn or MLflow (seconds on a small machine).
    After the run, the stage's output hashes are recorded under the key it ran with (StageCache)."""

    def run(params, task: str = "lyrics", extra_tags: dict[str, str] | None = None):
        note_outcome(name, "ran")
        stage_run = importlib.import_module(f"tasks.{name}").run
        result = stage_run(params, task=task, **({"extra_tags": extra_tags} if extra_tags is not None else {}))
        stage, txn = f"{task}-{name}", get_transaction()
        record = read_record(stage)
        if txn is not None and record is not None and record["key"] == txn.key:
            record["outputs"] = outputs_state(stage_spec(params, stage))
            write_record(stage, record)
        return result

    run.__name__ = run.__qualname__ = name
    return run


def stage_task(name: str, **options):
    """The cached Prefect task of stage `name`. Results persist under PREFECT_HOME/storage
    (PREFECT_RESULTS_LOCAL_STORAGE_PATH), so a later flow run, ephemeral or served, reuses them."""
    return task(stage_function(name), name=name, cache_policy=StageCache(), persist_result=True, **options)


# Retries only where a retry can help: a re-run of train resumes from its epoch checkpoint, and
# register may meet a busy SQLite store ("database is locked") when runs overlap.
ingest_task = stage_task("ingest")
clean_task = stage_task("clean")
tokenize_task = stage_task("tokenize")
split_task = stage_task("split")
vocab_task = stage_task("vocab")
train_task = stage_task("train", retries=1)
evaluate_task = stage_task("evaluate", retries=1, retry_delay_seconds=5)
register_task = stage_task("register", retries=2, retry_delay_seconds=5)


def train_evaluate_register(params, task: str, artifact_key: str) -> dict:
    """The tail both flows share. The flow run and its MLflow run carry each other's ids: MLflow
    tags `prefect.flow_run_*`, Prefect artifact `artifact_key` with the MLflow run id. `stages`
    in the result says which stages ran and which were cached in this flow run."""
    tags = {"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": str(flow_run.name)}
    trained = train_task(params, extra_tags=tags, task=task)
    create_markdown_artifact(
        key=artifact_key,
        markdown=f"MLflow run `{trained['run_id']}` (experiment `{experiment_name(params, task)}`)",
        description="Tracking run of this flow run",
    )
    metrics = evaluate_task(params, task=task)
    registered = register_task(params, extra_tags=tags, task=task)
    return {
        "run_id": trained["run_id"],
        "metrics": metrics,
        "registered": registered,
        "stages": OUTCOMES.pop(str(flow_run.id), {}),
    }


def stages_summary(stages: dict[str, str]) -> str:
    """`stages ran: evaluate, register; cached: clean, tokenize, ...` for the flows' last line."""
    parts = [
        f"{what}: {', '.join(s for s, o in stages.items() if o == what)}"
        for what in ("ran", "cached")
        if what in stages.values()
    ]
    note = " (register cached: no new model version)" if stages.get("register") == "cached" else ""
    return "stages " + "; ".join(parts) + note
