"""Loading a registered model by URI (models:/name@alias, runs:/id/model) for the user CLIs."""

import os

import mlflow

from tasks.common.errors import PipelineError


def load_pyfunc(uri: str, make_hint: str = "make run"):
    """Load a model URI against MLFLOW_TRACKING_URI (default: the project's SQLite store)."""
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db")
    try:
        return mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as exc:
        raise PipelineError(
            f"cannot load {uri} from {mlflow.get_tracking_uri()} ({str(exc).splitlines()[0]}); "
            f"train and register one with `{make_hint}`, or pass --model PATH/TO/model.pt"
        ) from exc
