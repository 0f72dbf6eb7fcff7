"""`make serve` path: a Prefect server on 127.0.0.1, `python -m flows.serve`, then
`prefect deployment run train-lyrics/train-lyrics --watch` and
`prefect deployment run train-reviews/train-reviews --watch` complete a run on a tiny project."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import build_tiny_project, free_port, healthy, sh, stop, wait_until

pytestmark = pytest.mark.slow


def test_served_deployment_runs(tmp_path: Path):
    env = build_tiny_project(tmp_path, tasks=("lyrics", "reviews"))
    api = f"http://127.0.0.1:{free_port()}/api"
    env["PREFECT_API_URL"] = api
    prefect = str(Path(sys.executable).parent / "prefect")
    port = api.split(":")[2].split("/")[0]
    logs = tmp_path / "logs"
    logs.mkdir()
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", port],
        cwd=tmp_path,
        env=env,
        stdout=open(logs / "server.log", "w"),
        stderr=subprocess.STDOUT,
    )
    served = None
    try:
        wait_until(lambda: healthy(f"{api}/health"), 240, "prefect server")
        served = subprocess.Popen(
            [sys.executable, "-m", "flows.serve"],
            cwd=tmp_path,
            env=env,
            stdout=open(logs / "serve.log", "w"),
            stderr=subprocess.STDOUT,
        )
        wait_until(
            lambda: (
                subprocess.run(
                    [prefect, "deployment", "inspect", "train-lyrics/train-lyrics"], env=env, capture_output=True
                ).returncode
                == 0
            ),
            180,
            "deployment",
        )
        out = sh([prefect, "deployment", "run", "train-lyrics/train-lyrics", "--watch"], tmp_path, env, timeout=600)
        assert "Completed" in out.stdout, out.stdout[-2000:]
        assert (tmp_path / "reports/lyrics/registered.json").exists()
        out = sh([prefect, "deployment", "run", "train-reviews/train-reviews", "--watch"], tmp_path, env, timeout=600)
        assert "Completed" in out.stdout, out.stdout[-2000:]
        assert (tmp_path / "reports/reviews/registered.json").exists()
    finally:
        for proc in (served, server):
            stop(proc)
