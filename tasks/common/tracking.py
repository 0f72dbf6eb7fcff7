"""MLflow wiring: one run per pipeline execution. The train stage opens it and writes its id to
`<train.output_dir>/mlflow_run.json`; evaluate and register read that file and log to the same run."""

import json
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric

from tasks.common.atomic import write_json
from tasks.common.params import experiment_name, tracking_store
from tasks.common.ui_links import FLOW_RUN_URL_TAG, flow_run_note


def configure(params, task: str = "lyrics") -> None:
    """MLFLOW_TRACKING_URI wins; else params' `tracking.uri` (an SQLite file at the project root)."""
    mlflow.set_tracking_uri(tracking_store(params))
    mlflow.set_experiment(experiment_name(params, task))


def start_run(params, tags: dict[str, str], run_id: str | None = None, task: str = "lyrics") -> str:
    """Open (or, when resuming a killed training, reopen) the pipeline's run; returns its id. A run
    started by a flow on a Prefect server links back to it in its description, too."""
    configure(params, task)
    if run_id:
        return run_id
    if FLOW_RUN_URL_TAG in tags:
        name = tags.get("prefect.flow_run_name", tags.get("prefect.flow_run_id", "run"))
        tags = {**tags, "mlflow.note.content": flow_run_note(name, tags[FLOW_RUN_URL_TAG])}
    with mlflow.start_run(tags=tags) as run:
        return run.info.run_id


def log_params(run_id: str, params: dict) -> None:
    """Log params to the run; a resumed run re-logs identical values, which MLflow accepts."""
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params(params)


def log_metrics(run_id: str, metrics: dict) -> None:
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(metrics)


def run_id_file(output_dir: str | Path) -> Path:
    return Path(output_dir) / "mlflow_run.json"


def save_run_id(output_dir: str | Path, run_id: str) -> None:
    write_json({"run_id": run_id, "tracking_uri": mlflow.get_tracking_uri()}, run_id_file(output_dir))


def load_run_id(output_dir: str | Path) -> str:
    return json.loads(run_id_file(output_dir).read_text())["run_id"]


def experiment_id(params, run_id: str) -> str | None:
    """The experiment of the pipeline's run (for links to its page in the MLflow UI); None when the
    store does not have the run (wiped since a cached train stage opened it)."""
    try:
        return mlflow.MlflowClient(tracking_store(params)).get_run(run_id).info.experiment_id
    except mlflow.exceptions.MlflowException:
        return None


def log_evaluation(params, task: str, tp, metrics: dict, out: Path, files: tuple[str, ...]) -> None:
    """Log the evaluate stage's numeric metrics, eval-set hash and files to the pipeline's run."""
    configure(params, task)
    with mlflow.start_run(run_id=load_run_id(tp.train.output_dir)):
        mlflow.log_metrics(
            {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        )
        mlflow.set_tag("eval_set_hash", metrics["eval_set_hash"])
        for name in files:
            mlflow.log_artifact(str(out / name), artifact_path="evaluation")


def epoch_logger(run_id: str, prefix: str = ""):
    """The `on_epoch_end` callback that sends one epoch's numbers to MLflow, each key after
    `prefix` (a stage that trains two models in turn keeps their series apart)."""
    client = mlflow.MlflowClient()

    def on_epoch_end(row: dict) -> None:
        step, now = int(row["epoch"]), int(time.time() * 1000)
        # One batch per epoch: a call per metric costs a store round trip each (slow on SQLite).
        metrics = [Metric(prefix + key, float(value), now, step) for key, value in row.items() if key != "epoch"]
        client.log_batch(run_id, metrics=metrics)

    return on_epoch_end
