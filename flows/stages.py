"""The stage functions of `tasks/` as Prefect tasks, shared by both flows (`task=` picks the pipeline).

Stages are cached with Prefect's own caching (`StageCache` below, persisted results): a stage is
skipped, in state `Cached`, when its input files, params keys and code hash as in its last run and
its outputs are still the files that run wrote. What a stage reads and writes comes from dvc.yaml
(`flows/fingerprint.py`), the list `dvc repro` uses too. Which stages ran and which were cached in a
flow run is read from the states Prefect gives their task runs (`StageRuns`).
"""

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import prefect
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.runtime import flow_run
from prefect.settings import get_current_settings
from prefect.transactions import get_transaction

from flows.fingerprint import fingerprint, outputs_state, stage_spec
from flows.scaleout import clean_stage, split_stage, tokenize_stage, vocab_stage
from tasks import evaluate, ingest, preflight, register
from tasks.catalog import task_package
from tasks.common.atomic import write_json
from tasks.common.errors import PipelineError
from tasks.common.params import Params, base_model_of, experiment_name, task_section, tracking_store
from tasks.common.ui_links import FLOW_RUN_URL_TAG, mlflow_links_markdown, prefect_flow_run_url

log = logging.getLogger(__name__)


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
        stage = dvc_stage(inputs.get("task", "lyrics"), task_ctx.task.name)  # e.g. lyrics-train
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


# Stages that serve every task, named without a task in dvc.yaml (one base model for all).
SHARED_STAGES = ("pretrain",)


def dvc_stage(task: str, name: str) -> str:
    """dvc.yaml's name of stage `name` run for pipeline `task`: `lyrics-train`, or `pretrain`."""
    return name if name in SHARED_STAGES else f"{task}-{name}"


def record_outputs(params, stage: str) -> None:
    """After a stage ran under the key StageCache issued, record its outputs' hashes under that key."""
    txn, record = get_transaction(), read_record(stage)
    if txn is not None and record is not None and record["key"] == txn.key:
        record["outputs"] = outputs_state(stage_spec(params, stage))
        write_record(stage, record)


def check_inputs(params, task: str, refresh: bool = False) -> None:
    """The pre-flight check of the task's inputs (tasks/preflight.py), so bad input fails with one
    line naming the user's file before any stage runs. Skipped when the task's first stage is cached
    from a run that read these same inputs: on a large corpus the check reads all of it."""
    first = f"{task}-{task_package(task).STAGES[0]}"
    if refresh or not is_fresh(params, first):
        preflight.check_inputs(params, task)


# Not cached by StageCache and not a stage in the summary: it writes nothing.
preflight_task = prefect.task(check_inputs, name="preflight", cache_policy=NO_CACHE)


def stage_function(name: str, stage_run):
    """`stage_run` (a `tasks.<stage>.run`) as the function of Prefect task `name`, recording its
    outputs once it has written them."""

    def run(params, task: str = "lyrics", extra_tags: dict[str, str] | None = None):
        result = stage_run(params, task=task, **({"extra_tags": extra_tags} if extra_tags is not None else {}))
        record_outputs(params, dvc_stage(task, name))
        return result

    run.__name__ = run.__qualname__ = name
    return run


def train_run(params, task: str = "lyrics", extra_tags: dict[str, str] | None = None) -> dict:
    """`tasks.train.run`, imported at its first call: the one deliberate deferral in the flows.
    tasks.train loads torch (1.8 s and 220 MiB more per process, measured), which a fully cached
    flow run never uses, nor a Dask worker, which imports the flow's modules to tokenize a shard."""
    from tasks import train  # noqa: PLC0415 (deferred on purpose, see the docstring)

    return train.run(params, task=task, extra_tags=extra_tags)


def pretrains_base(params, task: str) -> bool:
    """Whether `task`'s flow trains the base it fine-tunes from: the task's base (`<task>.base_model`,
    when its train.init uses one) is the pretrain stage's output; another path is a base the user
    brought, null none at all."""
    base = base_model_of(task_section(params, task))
    if not base or params.pretrain is None:
        return False
    return Path(base) == Path(params.pretrain.train.output_dir) / "model.pt"


def pretrain_run(params, task: str = "lyrics", extra_tags: dict[str, str] | None = None) -> dict:
    """`tasks.pretrain.run` for pipeline `task`, imported at its first call (torch, as `train_run`)."""
    from tasks import pretrain  # noqa: PLC0415 (deferred like tasks.train, see train_run)

    return pretrain.run(params, extra_tags=extra_tags)


def stage_task(name: str, stage_run, **options) -> prefect.Task:
    """The cached Prefect task of stage `name`. Results persist under PREFECT_HOME/storage
    (PREFECT_RESULTS_LOCAL_STORAGE_PATH), so a later flow run, ephemeral or served, reuses them."""
    function = stage_function(name, stage_run)
    return prefect.task(function, name=name, cache_policy=StageCache(), persist_result=True, **options)


# Retries only where a retry can help: a re-run of train resumes from its epoch checkpoint, and
# register may meet a busy SQLite store ("database is locked") when runs overlap.
ingest_task = stage_task("ingest", ingest.run)
clean_task = stage_task("clean", clean_stage)  # reviews: the rules sharded on Dask
tokenize_task = stage_task("tokenize", tokenize_stage)  # in the flow process, or sharded on Dask
split_task = stage_task("split", split_stage)  # the hashing sharded on Dask
vocab_task = stage_task("vocab", vocab_stage)  # the counting sharded on Dask
pretrain_task = stage_task("pretrain", pretrain_run, retries=1)  # a retry resumes from its epoch checkpoint
train_task = stage_task("train", train_run, retries=1)
evaluate_task = stage_task("evaluate", evaluate.run, retries=1, retry_delay_seconds=5)
register_task = stage_task("register", register.run, retries=2, retry_delay_seconds=5)


@dataclass
class StageRuns:
    """One flow run's stages of pipeline `task`: each runs as its Prefect task, and `outcomes` keeps
    what Prefect made of it: "cached" (state `Cached`: its last result reused) or "ran"."""

    params: Params
    task: str
    outcomes: dict[str, str] = field(default_factory=dict)

    def run(self, stage: prefect.Task, **kwargs):
        state = stage(self.params, task=self.task, return_state=True, **kwargs)
        self.outcomes[stage.name] = "cached" if state.name == "Cached" else "ran"
        return state.result()  # raises the stage's error when it failed


def flow_run_tags() -> dict[str, str]:
    """The MLflow tags naming this flow run, with its UI page when the Prefect API is a server."""
    settings = get_current_settings()
    tags = {"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": str(flow_run.name)}
    url = prefect_flow_run_url(settings.api.url, settings.ui_url, str(flow_run.id))
    return {**tags, FLOW_RUN_URL_TAG: url} if url else tags


def mlflow_artifact(stages: StageRuns, key: str, run_id: str, registered: dict | None = None, artifact_id=None):
    """Prefect artifact `key`: links to the flow run's MLflow run and, once registered, its model
    version (tasks/common/ui_links.py). Created after train; updated in place after register."""
    from tasks.common.tracking import experiment_id  # noqa: PLC0415 (MLflow: loaded only once a run exists)

    params = stages.params
    markdown = mlflow_links_markdown(
        tracking_store(params), experiment_name(params, stages.task), experiment_id(params, run_id), run_id, registered
    )
    if artifact_id is None:
        return create_markdown_artifact(key=key, markdown=markdown, description="Tracking run of this flow run")
    with get_client(sync_client=True) as client:
        client.update_artifact(artifact_id, ArtifactUpdate(data=markdown))
    return artifact_id


def train_evaluate_register(stages: StageRuns, artifact_key: str) -> dict:
    """The tail both flows share. The flow run and its MLflow run link to each other: MLflow tags
    `prefect.flow_run_*` (the URL and the run's description on a Prefect server), Prefect artifact
    `artifact_key` with links to the MLflow run and the registered version. `stages` in the result
    says which stages ran and which were cached in this flow run."""
    tags = flow_run_tags()
    trained = stages.run(train_task, extra_tags=tags)
    artifact = mlflow_artifact(stages, artifact_key, trained["run_id"])
    metrics = stages.run(evaluate_task)
    registered = stages.run(register_task, extra_tags=tags)
    mlflow_artifact(stages, artifact_key, trained["run_id"], registered, artifact)
    return {"run_id": trained["run_id"], "metrics": metrics, "registered": registered, "stages": stages.outcomes}


def stages_summary(stages: dict[str, str]) -> str:
    """`stages ran: evaluate, register; cached: clean, tokenize, ...` for the flows' last line."""
    parts = [
        f"{what}: {', '.join(s for s, o in stages.items() if o == what)}"
        for what in ("ran", "cached")
        if what in stages.values()
    ]
    note = " (register cached: no new model version)" if stages.get("register") == "cached" else ""
    return "stages " + "; ".join(parts) + note
