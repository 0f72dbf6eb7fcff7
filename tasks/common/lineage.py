"""Lineage tags for MLflow runs and model versions: code version, data hashes, params hash."""

import hashlib
import subprocess
from pathlib import Path

from tasks.common.params import params_hash


def git_commit() -> str:
    """HEAD's commit, with `-dirty` when tracked files differ from it; `unknown` outside git.
    Asked of the repository holding this code, not of the working directory a stage runs in."""
    code_dir = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=code_dir
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=code_dir,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def file_md5(path: str | Path) -> str:
    """md5, as DVC records it for a file, so tags can be matched against dvc.lock."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lineage_tags(params, task_params) -> dict[str, str]:
    """Tags that let anyone trace a run or model version back to its code, data and params."""
    tags = {"git_commit": git_commit(), "params_hash": params_hash(task_params)}
    for stage in ("input", "clean", "tokenize", "split"):  # `input`: the reviews' ingested table
        if not hasattr(task_params, stage):
            continue
        path = getattr(task_params, stage).output
        if Path(path).exists():
            tags[f"data.{stage}_md5"] = file_md5(path)
    if Path(task_params.vocab.output).exists():
        tags["data.vocab_md5"] = file_md5(task_params.vocab.output)
    return tags
