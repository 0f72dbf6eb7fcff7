"""A throwaway copy of the project (git + DVC initialised, lyrics only) to run the pipeline in
without touching the working tree's data, MLflow store or Prefect state."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


RAW = "data/raw/"


def project_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a clone plus local edits would hold, less the
    raw data (a corpus not yet git-ignored or DVC-tracked, a committed .dvc file): the scratch project
    gets its own corpus, which only DVC may track there (git holding it makes `dvc add` fail)."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file() and (not f.startswith(RAW) or f == f"{RAW}.gitignore")]


def make_lyrics_project(dest: Path, corpus: Path) -> dict:
    """Copy the project to `dest` with `corpus` as data/raw/lyrics and the reviews stages left out
    (so a plain `dvc repro` there is the lyrics pipeline); returns the environment to run it with."""
    for rel in project_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    dvc = yaml.safe_load((dest / "dvc.yaml").read_text(encoding="utf-8"))
    dvc["stages"] = {k: v for k, v in dvc["stages"].items() if not k.startswith("reviews-")}
    dvc["plots"] = [p for p in dvc.get("plots", []) if not next(iter(p)).startswith("reviews-")]
    (dest / "dvc.yaml").write_text(yaml.safe_dump(dvc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(dest),
        "MLFLOW_TRACKING_URI": f"sqlite:///{dest / 'mlflow.db'}",
        "PREFECT_HOME": str(dest / ".prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "bench"],
    ):
        subprocess.run(cmd, cwd=dest, env=env, check=True, capture_output=True)
    # After the commit: the corpus is DVC's to track (`dvc add`), never git's.
    (dest / "data/raw/lyrics").mkdir(parents=True, exist_ok=True)
    shutil.copy2(corpus, dest / "data/raw/lyrics" / corpus.name)
    return env


def run(cmd: list[str], cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc
