"""`mlflow models serve` as the load test starts it: on 127.0.0.1 and a free port, in its own
process group, with the venv's bin on PATH; and the memory of its process tree."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from tasks.common.errors import PipelineError

HOST = "127.0.0.1"  # the only host this module sends to


BIN = Path(sys.executable).parent  # the venv's bin: `mlflow models serve` starts `uvicorn` from PATH


def tree_rss_mib(proc: psutil.Process) -> float:
    """Resident memory of a process and its children (the mlflow CLI and its uvicorn worker)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with suppress(psutil.NoSuchProcess):  # a child that just exited
            total += p.memory_info().rss
    return total / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextmanager
def served(model_uri: str, tracking_uri: str, startup_s: float = 300) -> Iterator[tuple[str, psutil.Process]]:
    """`mlflow models serve` for model_uri on 127.0.0.1 and a free port, until /ping answers; yields
    (base URL, the server process) and stops it (its process group: the CLI and uvicorn) after."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = tempfile.NamedTemporaryFile("w+", prefix="mlflow-serve-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "-h",
        HOST,
        "-p",
        str(port),
        "--env-manager",
        "local",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while not ping(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                tail = log.read()[-2000:]
                raise PipelineError(f"mlflow models serve -m {model_uri} did not come up: {tail.splitlines()[-1:]}")
            time.sleep(0.5)
        yield url, psutil.Process(proc.pid)
    finally:
        stop_group(proc)
        log.close()
        os.unlink(log.name)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (started by `served`), SIGKILL it if still there after 30 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


class PeakRss:
    """The peak RSS of a server's process tree while the block runs, sampled every 0.2 s."""

    def __init__(self, server: psutil.Process):
        self.server, self.peak, self._done = server, tree_rss_mib(server), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            self.peak = max(self.peak, tree_rss_mib(self.server))

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
