"""Shared fixtures: a tiny synthetic lyrics corpus and params that train in seconds."""

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
JAY_CHOU = ROOT.parent / "shared" / "datasets" / "jaychou_lyrics.txt"

PHRASES = ["我爱你", "天空", "下雨", "回忆", "离开", "微笑", "城市", "夜晚", "想念", "故事", "风吹过",
           "心跳", "永远", "告白", "街角", "咖啡", "旋律", "月光", "海边", "秘密", "温柔", "等待"]


def make_song(rng: random.Random, lines: int) -> list[str]:
    song = ["".join(rng.sample(PHRASES, rng.randint(2, 4))) for _ in range(lines)]
    return song + song[:2]  # a chorus repeats, as in real lyrics


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A folder of 6 small songs (one file each), deterministic."""
    rng = random.Random(0)
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(6):
        (folder / f"song{i}.txt").write_text("\n".join(make_song(rng, 30)) + "\n", encoding="utf-8")
    return folder


def tiny_params_dict(tmp_path: Path, corpus: Path) -> dict:
    """The repo's params.yaml with every path under tmp_path and a model that trains in seconds."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    lp = params["lyrics"]
    lp["corpus"] = str(corpus)
    d = tmp_path
    lp["clean"].update(output=str(d / "data/clean.parquet"), report=str(d / "reports/clean.json"))
    lp["tokenize"].update(input=str(d / "data/clean.parquet"), output=str(d / "data/tokens.parquet"))
    lp["split"].update(input=str(d / "data/tokens.parquet"), output=str(d / "data/split.parquet"), block_lines=8)
    lp["vocab"].update(input=str(d / "data/split.parquet"), output=str(d / "data/vocab.json"))
    lp["model"].update(embedding_size=16, hidden_size=16, num_layers=1, dropout=0.0)
    lp["train"].update(output_dir=str(d / "models"), history=str(d / "reports/history.csv"),
                       checkpoint_dir=str(d / "checkpoints"), batch_size=4, bptt=8, epochs=2, lr=0.01)
    lp["evaluate"].update(output_dir=str(d / "reports"), metrics=str(d / "reports/metrics.json"),
                          sample_starts=["天空"], sample_length=5)
    lp["register"].update(output=str(d / "reports/registered.json"))
    params["tracking"] = {"uri": f"sqlite:///{d / 'mlflow.db'}", "experiment": "test-lyrics"}
    return params


@pytest.fixture
def tiny_params_file(tmp_path: Path, tiny_corpus: Path, monkeypatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params_dict(tmp_path, tiny_corpus), allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def tiny_params(tiny_params_file: Path):
    from tasks.params import load_params

    return load_params(tiny_params_file)


def copy_project(dest: Path) -> None:
    """Copy the code and pipeline files (not data, models or stores) into dest, for DVC/Prefect e2e tests."""
    for name in ("tasks", "flows"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, dest / name)


def build_tiny_project(root: Path) -> dict:
    """A copy of the project in root with a tiny corpus in data/raw/lyrics and tiny model params;
    returns the environment to run its commands with (isolated MLflow store and Prefect home)."""
    copy_project(root)
    raw = root / "data/raw/lyrics"
    raw.mkdir(parents=True)
    rng = random.Random(1)
    for i in range(6):
        (raw / f"song{i}.txt").write_text("\n".join(make_song(rng, 30)) + "\n", encoding="utf-8")
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["lyrics"]["split"]["block_lines"] = 8
    params["lyrics"]["model"].update(embedding_size=16, hidden_size=16, num_layers=1, dropout=0.0)
    params["lyrics"]["train"].update(batch_size=4, bptt=8, epochs=2)
    params["lyrics"]["evaluate"].update(sample_starts=["天空"], sample_length=5)
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return {**os.environ, "PYTHONPATH": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "PREFECT_HOME": str(root / ".prefect"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "OMP_NUM_THREADS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def sh(args: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command; on failure the assertion shows the tail of its output."""
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc
