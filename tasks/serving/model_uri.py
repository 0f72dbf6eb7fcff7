"""Loading a registered model by URI (models:/name@alias, runs:/id/model) for the user CLIs, and
the defaults they take from params.yaml: the store (`tracking.uri`) and each task's registered
champion (`<task>.register.model_name` / `alias`)."""

import argparse
import os
from pathlib import Path

from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.common.params import TASKS, load_params, task_section, tracking_store


def champion_uri(task: str, params_file: str | Path = "params.yaml") -> str:
    """`models:/<model_name>@<alias>` of the task's `register` section: the CLIs' default --model."""
    if not Path(params_file).is_file():
        raise PipelineError(
            f"{params_file}: not found (its {task}.register names the default model); "
            "run from the project root, pass --params PATH, or pass --model URI|PATH"
        )
    registry = task_section(load_params(params_file), task).registry
    return f"models:/{registry.model_name}@{registry.alias}"


def tracking_uri(params_file: str | Path = "params.yaml") -> str:
    """MLFLOW_TRACKING_URI when set, else params' `tracking.uri`, as the stages resolve it.

    Without either, a one-line error rather than a fallback store: a store that is not the one the
    pipeline registered to cannot hold its models, and MLflow would create it (an empty mlflow.db
    in whatever directory the command ran in) only to answer "model not found"."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return uri
    if not Path(params_file).is_file():
        raise PipelineError(
            f"MLFLOW_TRACKING_URI is not set and there is no {params_file} to read tracking.uri from; "
            "run from the project root, pass --params PATH, or set MLFLOW_TRACKING_URI"
        )
    return tracking_store(load_params(params_file))


def load_pyfunc(uri: str, make_hint: str = "make run", params_file: str | Path = "params.yaml"):
    """Load a model URI from the store `tracking_uri(params_file)` names."""
    import mlflow  # noqa: PLC0415 (seconds to import: only when a URI is loaded, not for the defaults above)

    mlflow.set_tracking_uri(tracking_uri(params_file))
    try:
        return mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as exc:
        raise PipelineError(
            f"cannot load {uri} from {mlflow.get_tracking_uri()} ({str(exc).splitlines()[0]}); "
            f"train and register one with `{make_hint}`, or pass --model PATH/TO/model.pt"
        ) from exc


def registered(uri: str, store: str) -> bool:
    """Whether `models:/<name>@<alias>` resolves in `store` (other URIs: assumed to). A missing
    SQLite file is not opened: MLflow would create an empty store to answer no."""
    if not uri.startswith("models:/") or "@" not in uri:
        return True
    scheme, _, path = store.partition(":///")
    if scheme == "sqlite" and path and not Path(path).is_file():
        return False
    import mlflow  # noqa: PLC0415

    name, alias = uri.removeprefix("models:/").split("@", 1)
    try:
        mlflow.MlflowClient(store).get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return False
    return True


def main() -> None:
    """`python -m tasks.serving.model_uri TASK [--params FILE]`: the task's champion URI and the
    store holding it, one per line (what `make serve-model` serves); a one-line error when the
    store has no such model."""
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("task", choices=TASKS)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args()
    uri, store = champion_uri(args.task, args.params), tracking_uri(args.params)
    if not registered(uri, store):
        raise PipelineError(f"{uri} is not in {store}; train and register one with `make {args.task}`")
    print(uri)
    print(store)


if __name__ == "__main__":
    run_cli(main)
