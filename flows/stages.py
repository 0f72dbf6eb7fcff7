"""The stage functions of `tasks/` as Prefect tasks, shared by both flows (`task=` picks the pipeline)."""

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks import clean, evaluate, ingest, register, split, tokenize, train, vocab
from tasks.tracking import experiment_name

# Retries only where a retry can help: a re-run of train resumes from its epoch checkpoint, and
# register may meet a busy SQLite store ("database is locked") when runs overlap.
ingest_task = task(ingest.run, name="ingest", cache_policy=NO_CACHE)
clean_task = task(clean.run, name="clean", cache_policy=NO_CACHE)
tokenize_task = task(tokenize.run, name="tokenize", cache_policy=NO_CACHE)
split_task = task(split.run, name="split", cache_policy=NO_CACHE)
vocab_task = task(vocab.run, name="vocab", cache_policy=NO_CACHE)
train_task = task(train.run, name="train", retries=1, cache_policy=NO_CACHE)
evaluate_task = task(evaluate.run, name="evaluate", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
register_task = task(register.run, name="register", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)


def train_evaluate_register(params, task: str, artifact_key: str) -> dict:
    """The tail both flows share. The flow run and its MLflow run carry each other's ids: MLflow
    tags `prefect.flow_run_*`, Prefect artifact `artifact_key` with the MLflow run id."""
    tags = {"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": str(flow_run.name)}
    trained = train_task(params, extra_tags=tags, task=task)
    create_markdown_artifact(key=artifact_key, markdown=f"MLflow run `{trained['run_id']}` "
                             f"(experiment `{experiment_name(params, task)}`)", description="Tracking run of this flow run")
    metrics = evaluate_task(params, task=task)
    registered = register_task(params, extra_tags=tags, task=task)
    return {"run_id": trained["run_id"], "metrics": metrics, "registered": registered}
