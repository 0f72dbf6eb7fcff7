"""Remote stores, exercised on this machine: a DVC remote (push, wipe, pull), an MLflow tracking
server with its own backend and artifact store, and a Prefect server with a process work pool and
a worker (the alternative to `flows.serve`)."""

import contextlib
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    build_tiny_project,
    free_port,
    healthy,
    sh,
    stop,
    tiny_params_dict,
    wait_until,
    write_params,
    write_tiny_corpus,
)

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def md5s(root: Path, paths: list[str]) -> dict[str, str]:
    return {p: hashlib.md5((root / p).read_bytes()).hexdigest() for p in paths}


def test_dvc_push_then_pull_restores_the_same_bytes(tmp_path):
    root, remote = tmp_path / "project", tmp_path / "remote"
    root.mkdir()
    env = build_tiny_project(root)
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "remote", "add", "-d", "store", str(remote)],
        ["dvc", "add", "-q", "data/raw/lyrics"],
        ["dvc", "repro", "-q", "lyrics-clean"],
        ["dvc", "push", "-q"],
    ):
        sh(cmd, root, env)
    files = [
        *(f"data/raw/lyrics/{p.name}" for p in sorted((root / "data/raw/lyrics").iterdir())),
        "data/clean/lyrics.parquet",
    ]
    before = md5s(root, files)
    assert any(remote.rglob("*")), "dvc push wrote nothing to the remote"

    # A fresh clone's view: no outputs, no local cache; only the .dvc/dvc.lock pointers and the remote.
    sh(["rm", "-rf", "data/raw/lyrics", "data/clean/lyrics.parquet", ".dvc/cache"], root, env)
    sh(["dvc", "pull", "-q", "data/raw/lyrics.dvc", "lyrics-clean"], root, env)  # only what was pushed
    assert md5s(root, files) == before
    assert "up to date" in sh(["dvc", "status", "lyrics-clean"], root, env).stdout


def test_pipeline_against_an_mlflow_tracking_server(tmp_path, monkeypatch):
    import mlflow

    from tasks import clean, evaluate, register, split, tokenize, train, vocab
    from tasks.common.params import load_params
    from tasks.common.tracking import load_run_id

    port, artifacts = free_port(), tmp_path / "artifacts"
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'srv.db'}",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=open(tmp_path / "mlflow-server.log", "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: healthy(f"{url}/health"), 120, "mlflow server")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.chdir(tmp_path)
        params = load_params(
            write_params(tmp_path / "params.yaml", tiny_params_dict(tmp_path, write_tiny_corpus(tmp_path / "raw")))
        )
        for stage in (clean, tokenize, split, vocab, train, evaluate, register):
            stage.run(params)

        client = mlflow.MlflowClient(url)
        run_id = load_run_id(params.lyrics.train.output_dir)
        run = client.get_run(run_id)
        assert "test_perplexity" in run.data.metrics and "val_ppl" in run.data.metrics
        version = client.get_model_version_by_alias("lyrics-lm", "champion")
        assert version.version == "1" and version.run_id == run_id
        # Artifacts went through the server into its --artifacts-destination, not a local ./mlruns.
        assert list(artifacts.rglob("MLmodel")), "no model artifacts under the server's artifact destination"
        assert list(artifacts.rglob("metrics.json"))
        assert not (tmp_path / "mlruns").exists()
    finally:
        stop(server)


def test_process_work_pool_worker_runs_the_deployment(tmp_path):
    env = build_tiny_project(tmp_path)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env["PREFECT_API_URL"] = api
    prefect = str(BIN / "prefect")
    logs = tmp_path / "logs"
    logs.mkdir()
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=open(logs / "server.log", "w"),
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        wait_until(lambda: healthy(f"{api}/health"), 240, "prefect server")
        out = sh([sys.executable, "-m", "flows.deploy", "--pool", "test-pool"], tmp_path, env, timeout=300)
        assert "deployed" in out.stdout
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "test-pool"],
            cwd=logs,
            env=env,
            stdout=open(logs / "worker.log", "w"),
            stderr=subprocess.STDOUT,
        )
        run = [prefect, "deployment", "run", "train-lyrics/train-lyrics", "--watch"]
        out = sh(run, tmp_path, env, timeout=600)
        assert "Completed" in out.stdout, out.stdout[-2000:]
        assert (tmp_path / "reports/lyrics/registered.json").exists()  # the worker ran it in the project dir
        assert "test-pool" in sh([prefect, "deployment", "inspect", "train-lyrics/train-lyrics"], tmp_path, env).stdout

        # Run again: the worker's flow run finds every stage in the cache (Prefect's task-run logs).
        out = sh(run, tmp_path, env, timeout=600)
        assert "Completed" in out.stdout, out.stdout[-2000:]
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", out.stdout).group(1)

        def cached_lines() -> int:
            logs = sh([prefect, "flow-run", "logs", flow_run_id], tmp_path, env).stdout
            return logs.count("Finished in state Cached")

        # Logs reach the API asynchronously, after --watch may have returned: wait (bounded) for them.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: cached_lines() >= 8, 60, "the flow run's task logs")
        assert cached_lines() == 8  # pretrain and the seven lyrics stages
    finally:
        stop(worker)
        stop(server)
