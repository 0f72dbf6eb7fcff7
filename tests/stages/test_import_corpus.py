"""Importing a lyrics corpus (`python -m tasks.import_corpus PATH`, what `make run LYRICS=PATH`
calls): checked first, then the corpus folder is REPLACED in one swap; a rejected or crashed import
leaves it byte for byte as it was. And raw data stays out of git: data/raw/ is git-ignored until
DVC tracks it, and the bench's scratch project never commits a corpus."""

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import import_corpus as imp
from tasks.common.errors import PipelineError
from tasks.common.params import load_params
from tasks.preflight import check_inputs
from tests.helpers import ROOT, assert_one_line_error, write_lyrics_params, write_tiny_corpus


def run_import(source: Path, params_file: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tasks.import_corpus", str(source), "--params", str(params_file)],
        cwd=params_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder's parent (the corpus and anything an import might leave beside it)."""
    return {str(p.relative_to(folder.parent)): p.read_bytes() for p in sorted(folder.parent.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path) -> tuple[Path, Path]:
    """(params file, corpus folder): params whose lyrics.corpus is tmp/data/raw/lyrics, not yet there."""
    corpus = tmp_path / "data" / "raw" / "lyrics"
    return write_lyrics_params(tmp_path, corpus), corpus


def good_corpus(tmp_path: Path, name: str, seed: int) -> Path:
    return write_tiny_corpus(tmp_path / name, seed=seed)


def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "bad.bin.txt"
    binary.write_bytes(bytes(random.Random(0).choices(range(256), k=20_000)))
    gibberish = tmp_path / "gibberish.txt"
    gibberish.write_bytes(bytes(random.Random(0).choices(range(0x81, 0xFF), k=20_000)))
    tiny = tmp_path / "two_lines.txt"
    tiny.write_text("天空下雨\n我爱你\n", encoding="utf-8")
    punctuation = tmp_path / "punctuation.txt"
    punctuation.write_text("！！！\n。。。\n~~~\n", encoding="utf-8")
    image = tmp_path / "cover.jpg"
    image.write_bytes(b"\xff\xd8\xff")
    mixed = write_tiny_corpus(tmp_path / "mixed")
    shutil.copy(binary, mixed / "zz_bad.txt")
    return {
        "missing": tmp_path / "nope.txt",
        "binary": binary,
        "gibberish": gibberish,
        "two_lines": tiny,
        "punctuation": punctuation,
        "not_lyrics": image,
        "one_bad_file_in_a_folder": mixed,
    }


@pytest.mark.parametrize(
    "case", ["missing", "binary", "gibberish", "two_lines", "punctuation", "not_lyrics", "one_bad_file_in_a_folder"]
)
def test_a_failed_import_leaves_the_corpus_byte_identical(tmp_path, project, case):
    params_file, corpus = project
    assert run_import(good_corpus(tmp_path, "first", 1), params_file).returncode == 0
    before = snapshot(corpus)
    source = bad_inputs(tmp_path)[case]
    assert_one_line_error(run_import(source, params_file), str(source))
    assert snapshot(corpus) == before


def test_bad_import_then_good_import_trains_on_the_good_corpus_alone(tmp_path, project):
    params_file, corpus = project
    bad = bad_inputs(tmp_path)["binary"]
    assert_one_line_error(run_import(bad, params_file), str(bad))
    assert not corpus.exists()  # nothing was imported, not even a folder
    good = good_corpus(tmp_path, "good", 2)
    result = run_import(good, params_file)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in corpus.iterdir()) == sorted(p.name for p in good.iterdir())
    for p in good.iterdir():
        assert (corpus / p.name).read_bytes() == p.read_bytes()
    check_inputs(load_params(params_file), "lyrics")  # the run's own checks pass on it


def test_two_good_imports_give_only_the_second(tmp_path, project):
    params_file, corpus = project
    first = good_corpus(tmp_path, "first", 1)
    (first / "extra.lrc").write_text("[00:01.00]只在第一次导入里\n", encoding="utf-8")
    assert run_import(first, params_file).returncode == 0
    second = tmp_path / "second.txt"
    second.write_text("\n".join(f"第{i}行天空下雨" for i in range(60)), encoding="utf-8")
    result = run_import(second, params_file)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in corpus.iterdir()] == ["second.txt"]
    assert (corpus / "second.txt").read_bytes() == second.read_bytes()
    # One note on stdout: what it imported and what it replaced.
    (note,) = result.stdout.splitlines()
    assert note.startswith(f"imported {second} into {corpus} (1 file(s), 60 usable lines)")
    assert note.endswith("replaced its 7 file(s)")
    assert sorted(os.listdir(corpus.parent)) == ["lyrics"]  # no temp folder left beside it


def test_a_folder_keeps_its_layout_and_only_lyric_files(tmp_path, project):
    params_file, corpus = project
    source = good_corpus(tmp_path, "src", 3)
    (source / "cd2").mkdir()
    shutil.move(source / "song5.txt", source / "cd2" / "song5.lrc")
    (source / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    assert run_import(source, params_file).returncode == 0
    files = sorted(str(p.relative_to(corpus)) for p in corpus.rglob("*") if p.is_file())
    assert files == ["cd2/song5.lrc", *(f"song{i}.txt" for i in range(5))]


def test_a_crash_while_copying_leaves_the_corpus_as_it_was(tmp_path, project, monkeypatch):
    params_file, corpus = project
    lp = load_params(params_file).lyrics
    imp.import_corpus(good_corpus(tmp_path, "first", 1), lp)
    before = snapshot(corpus)
    copied = []

    def copy_then_crash(src, dst):
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(shutil.copyfile(src, dst))

    monkeypatch.setattr(imp.shutil, "copy2", copy_then_crash)
    with pytest.raises(OSError):
        imp.import_corpus(good_corpus(tmp_path, "second", 2), lp)
    assert snapshot(corpus) == before


def test_leftovers_of_a_killed_import_are_cleaned_up(tmp_path, project):
    params_file, corpus = project
    lp = load_params(params_file).lyrics
    imp.import_corpus(good_corpus(tmp_path, "first", 1), lp)
    # Killed mid-copy (a half-built folder), and killed between the two renames of the fallback swap
    # (the corpus moved aside, none in place): the next import repairs both before it starts.
    half = corpus.parent / ".lyrics.import-killed"
    half.mkdir()
    (half / "song0.txt").write_text("半", encoding="utf-8")
    corpus.rename(corpus.parent / ".lyrics.old-killed")
    imp.remove_leftovers(corpus)
    assert sorted(os.listdir(corpus.parent)) == ["lyrics"]
    assert len(list(corpus.iterdir())) == 6


def test_the_swap_without_an_atomic_exchange_also_replaces(tmp_path, project, monkeypatch):
    params_file, corpus = project
    lp = load_params(params_file).lyrics
    imp.import_corpus(good_corpus(tmp_path, "first", 1), lp)
    monkeypatch.setattr(imp, "exchange", lambda a, b: False)  # not Linux, or no renameat2
    single = tmp_path / "one.txt"
    single.write_text("\n".join(f"第{i}行天空下雨" for i in range(60)), encoding="utf-8")
    imp.import_corpus(single, lp)
    assert [p.name for p in corpus.iterdir()] == ["one.txt"]
    assert sorted(os.listdir(corpus.parent)) == ["lyrics"]


def test_a_file_corpus_setting_is_refused(tmp_path, tiny_corpus):
    lp = load_params(write_lyrics_params(tmp_path, tmp_path / "corpus.txt")).lyrics
    with pytest.raises(PipelineError, match="lyrics.corpus is a file"):
        imp.import_corpus(tiny_corpus, lp)


# --- the make target ----------------------------------------------------------------------------


def make(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # -o setup: the venv exists; do not (re)install it.
    cmd = ["make", "-f", str(ROOT / "Makefile"), "-o", "setup", f"VENV={ROOT / '.venv'}", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lyrics_imports_through_the_checked_import(tmp_path, project):
    _, corpus = project
    dry = make("-n", "lyrics", "LYRICS=x.txt", cwd=tmp_path)
    assert "-m tasks.import_corpus" in dry.stdout and "cp " not in dry.stdout
    # A rejected file stops `make lyrics` before the flow, and nothing lands in data/raw/lyrics.
    bad = bad_inputs(tmp_path)["binary"]
    result = make("lyrics", f"LYRICS={bad}", cwd=tmp_path)
    assert result.returncode != 0
    assert f"error: {bad}: looks like a binary file" in result.stderr
    assert "Traceback" not in result.stderr and "flows.train_lyrics" not in result.stdout
    assert not corpus.exists()


# --- raw data and git ---------------------------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def test_raw_data_is_git_ignored_until_dvc_tracks_it():
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "data/raw/lyrics/jaychou_lyrics.txt", "data/raw/reviews.csv"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == ["data/raw/lyrics/jaychou_lyrics.txt", "data/raw/reviews.csv"]
    for kept in ("data/raw/lyrics.dvc", "data/raw/.gitignore"):
        assert subprocess.run(["git", "check-ignore", "--no-index", "-q", kept], cwd=ROOT).returncode == 1, kept


def fake_checkout(root: Path, corpus: Path, commit_corpus: bool) -> None:
    """A git checkout of the project's git/DVC setup with a corpus in data/raw/lyrics, untracked (as
    the README says to put it) or, worse, committed to git before the raw/.gitignore existed."""
    for rel in (
        ".gitignore",
        ".dvcignore",
        ".dvc/config",
        ".dvc/.gitignore",
        "data/README.md",
        "data/raw/.gitignore",
        "dvc.yaml",
        "params.yaml",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, root / rel)
    (root / "data/raw/lyrics").mkdir()
    shutil.copy2(corpus, root / "data/raw/lyrics/jaychou_lyrics.txt")
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)
    if commit_corpus:
        git("add", "-f", "data/raw/lyrics/jaychou_lyrics.txt", cwd=root)
    git("commit", "-qm", "checkout", cwd=root)


@pytest.mark.parametrize("commit_corpus", [False, True], ids=["untracked-corpus", "committed-corpus"])
def test_bench_scratch_project_never_commits_raw_data(tmp_path, monkeypatch, commit_corpus):
    from benchmarks import scratch

    corpus = tmp_path / "jaychou_lyrics.txt"
    corpus.write_text("\n".join(f"第{i}行天空下雨" for i in range(60)), encoding="utf-8")
    root = tmp_path / "checkout"
    fake_checkout(root, corpus, commit_corpus)
    monkeypatch.setattr(scratch, "ROOT", root)
    dest = tmp_path / "scratch"
    env = scratch.make_lyrics_project(dest, corpus)
    assert git("ls-files", "data/raw", cwd=dest).split() == ["data/raw/.gitignore"]
    scratch.run(["dvc", "add", "-q", "data/raw/lyrics"], dest, env)  # failed when git held the corpus
    assert git("status", "--porcelain", cwd=dest).splitlines() == ["?? data/raw/lyrics.dvc"]
