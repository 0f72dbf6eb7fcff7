"""A training killed mid-run loses nothing finished: rerunning the stage resumes from the last
epoch checkpoint, logs to the same MLflow run, and ends with the model an uninterrupted run trains."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tasks import clean, split, tokenize, vocab
from tasks.common.params import load_params
from tests.helpers import ROOT, tiny_params_dict

pytestmark = pytest.mark.slow


def test_killed_training_resumes_into_the_same_run(tmp_path: Path, tiny_corpus: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the cwd
    raw = tiny_params_dict(tmp_path, tiny_corpus)
    raw["lyrics"]["train"].update(epochs=40, early_stopping_patience=40)
    raw["lyrics"]["model"]["dropout"] = 0.3  # random masks: the resumed run must draw the uninterrupted run's
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    params = load_params(params_file)
    for stage in (clean, tokenize, split, vocab):
        stage.run(params)

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "tasks.train", "--params", str(params_file)]
    checkpoint = tmp_path / "checkpoints" / "last.pt"
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "no epoch checkpoint was written before the kill"
    assert not (tmp_path / "models" / "model.pt").exists()  # nothing half-finished passed for done
    killed_run_id = (tmp_path / "checkpoints" / "run_id").read_text().split()[1]

    # The identical command picks up where the killed one stopped.
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stderr
    assert json.loads((tmp_path / "models" / "mlflow_run.json").read_text())["run_id"] == killed_run_id
    assert not checkpoint.exists()  # finished: the resume point is cleaned up
    resumed = outputs(tmp_path)

    # The same command once more, from scratch (nothing left to resume), runs uninterrupted: the
    # resumed run's numbers and weights are the ones it gets.
    straight = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "resuming from" not in straight.stderr
    uninterrupted = outputs(tmp_path)
    assert len(resumed["history"]) == 40 and resumed["history"] == uninterrupted["history"]
    assert resumed["weights"].keys() == uninterrupted["weights"].keys()
    for name, tensor in resumed["weights"].items():
        assert torch.equal(tensor, uninterrupted["weights"][name]), name
    assert resumed["cache"] == uninterrupted["cache"]


def outputs(root: Path) -> dict:
    """The train stage's history (timing left out), weights and cache."""
    with open(root / "reports" / "history.csv", newline="", encoding="utf-8") as f:
        history = [{k: v for k, v in row.items() if k not in ("seconds", "tokens_per_s")} for row in csv.DictReader(f)]
    ckpt = torch.load(root / "models" / "model.pt", weights_only=True)
    return {"history": history, "weights": ckpt["state_dict"], "cache": ckpt["cache"]}
