"""Links between the Prefect and MLflow UIs (tasks/common/ui_links.py): URLs on servers, `make ui`
directions for the local store."""

import pytest

from tasks.common.ui_links import (
    LOCAL_MLFLOW_UI,
    flow_run_note,
    is_server,
    mlflow_links_markdown,
    mlflow_run_path,
    mlflow_url,
    prefect_flow_run_url,
    prefect_ui_url,
)

REGISTERED = {"model_name": "lyrics-lm", "version": "3"}


@pytest.mark.parametrize(
    "uri, server",
    [
        ("http://127.0.0.1:5000", True),
        ("HTTPS://mlflow.example.com", True),
        ("sqlite:///mlflow.db", False),
        ("file:///tmp/mlruns", False),
        ("./mlruns", False),
        ("", False),
        (None, False),
    ],
)
def test_only_http_addresses_are_servers(uri, server):
    assert is_server(uri) is server


def test_run_and_version_urls_on_a_tracking_server():
    assert mlflow_url("http://host:5000/", mlflow_run_path("7", "abc")) == "http://host:5000/#/experiments/7/runs/abc"
    assert mlflow_url("https://host/mlflow", "#/models/m/versions/1") == "https://host/mlflow/#/models/m/versions/1"
    assert mlflow_url("sqlite:///mlflow.db", "#/x") is None
    assert mlflow_run_path(None, "abc") == "#/runs/abc"  # MLflow's direct route finds the experiment


def test_artifact_on_a_server_has_clickable_links_to_the_run_and_the_version():
    md = mlflow_links_markdown("http://host:5000", "lyrics-lm", "7", "abc", REGISTERED)
    assert "[MLflow run `abc`](http://host:5000/#/experiments/7/runs/abc)" in md
    assert "[lyrics-lm v3](http://host:5000/#/models/lyrics-lm/versions/3)" in md
    assert "make ui" not in md


def test_artifact_before_register_links_the_run_only():
    md = mlflow_links_markdown("http://host:5000", "lyrics-lm", "7", "abc")
    assert "runs/abc" in md and "versions" not in md


def test_artifact_for_the_local_store_says_how_to_open_it():
    md = mlflow_links_markdown("sqlite:///mlflow.db", "review-sentiment", "2", "abc", REGISTERED)
    assert "make ui" in md and "sqlite:///mlflow.db" in md
    assert f"{LOCAL_MLFLOW_UI}/#/experiments/2/runs/abc" in md
    assert f"{LOCAL_MLFLOW_UI}/#/models/lyrics-lm/versions/3" in md
    assert "](" not in md  # no link that would point at nothing while `make ui` is not running


def test_prefect_ui_url_from_settings():
    assert prefect_ui_url("http://127.0.0.1:4200/api") == "http://127.0.0.1:4200"
    assert prefect_ui_url("http://127.0.0.1:4200/api/", None) == "http://127.0.0.1:4200"
    assert prefect_ui_url("https://prefect.internal/api", "https://ui.internal/") == "https://ui.internal"
    assert prefect_ui_url(None, "http://127.0.0.1:4200") is None  # the ephemeral API: gone after the run


def test_flow_run_url_and_note():
    url = prefect_flow_run_url("http://127.0.0.1:4200/api", None, "1234-abcd")
    assert url == "http://127.0.0.1:4200/runs/flow-run/1234-abcd"
    assert prefect_flow_run_url(None, None, "1234-abcd") is None
    assert flow_run_note("sassy-fox", url) == f"Trained by Prefect flow run [sassy-fox]({url})."
