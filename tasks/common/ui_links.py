"""Links between the UIs: the MLflow run and registered version as URLs for the Prefect artifact, and
the Prefect flow run as a URL for the MLflow run. Pure functions of the stores' addresses: a link is
given only where a server answers at it (an HTTP tracking URI, a Prefect API URL); for the local
SQLite / file store the text says how to open it with `make ui`."""

LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"  # where `make ui` serves the local store (Makefile)
FLOW_RUN_URL_TAG = "prefect.flow_run_url"  # the MLflow run's (and version's) tag: its Prefect flow run page


def is_server(uri: str | None) -> bool:
    return bool(uri) and uri.lower().startswith(("http://", "https://"))


def mlflow_run_path(experiment_id: str | None, run_id: str) -> str:
    """The run's page; without its experiment, MLflow's direct run route (it finds the experiment)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}" if experiment_id else f"#/runs/{run_id}"


def mlflow_version_path(model_name: str, version: str) -> str:
    return f"#/models/{model_name}/versions/{version}"


def mlflow_url(tracking_uri: str | None, path: str) -> str | None:
    """The UI URL of `path` (`#/...`) on an MLflow tracking server; None for a local store."""
    return f"{tracking_uri.rstrip('/')}/{path}" if is_server(tracking_uri) else None


def mlflow_links_markdown(
    tracking_uri: str, experiment: str, experiment_id: str | None, run_id: str, registered: dict | None = None
) -> str:
    """The Prefect artifact's Markdown: the MLflow run and, once registered, its model version, as
    clickable links on a tracking server, or the `make ui` address of each for a local store."""
    run_path = mlflow_run_path(experiment_id, run_id)
    version = registered and (registered["model_name"], str(registered["version"]))
    version_path = version and mlflow_version_path(*version)
    if is_server(tracking_uri):
        lines = [f"- [MLflow run `{run_id}`]({mlflow_url(tracking_uri, run_path)}) (experiment `{experiment}`)"]
        if version:
            lines.append(f"- [{version[0]} v{version[1]}]({mlflow_url(tracking_uri, version_path)}) (model card)")
        return "\n".join(lines) + "\n"
    lines = [
        f"MLflow run `{run_id}` (experiment `{experiment}`) is in the local store `{tracking_uri}`.",
        "Run `make ui` in the project directory, then open:",
        "",
        f"- the run: {LOCAL_MLFLOW_UI}/{run_path}",
    ]
    if version:
        lines.append(f"- {version[0]} v{version[1]} and its model card: {LOCAL_MLFLOW_UI}/{version_path}")
    return "\n".join(lines) + "\n"


def prefect_ui_url(api_url: str | None, ui_url: str | None = None) -> str | None:
    """The Prefect UI of a Prefect server: `PREFECT_UI_URL` when set, else the API URL without its
    `/api`; None without a server (the ephemeral API is gone once the run ends)."""
    if not is_server(api_url):
        return None
    if ui_url:
        return ui_url.rstrip("/")
    base = api_url.rstrip("/")
    return base.removesuffix("/api")


def prefect_flow_run_url(api_url: str | None, ui_url: str | None, flow_run_id: str) -> str | None:
    ui = prefect_ui_url(api_url, ui_url)
    return f"{ui}/runs/flow-run/{flow_run_id}" if ui else None


def flow_run_note(flow_run_name: str, url: str) -> str:
    """The MLflow run's description (tag `mlflow.note.content`, Markdown): the way back to Prefect."""
    return f"Trained by Prefect flow run [{flow_run_name}]({url})."
