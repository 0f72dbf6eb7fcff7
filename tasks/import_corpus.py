"""Import a lyrics corpus: check it first, then REPLACE the corpus with it (what `make run LYRICS=PATH`
calls).

    python -m tasks.import_corpus PATH [--params params.yaml] [--set KEY=VALUE ...]

PATH is a .txt/.lrc file or a folder of them. It is checked as a run would read it (tasks/preflight.py:
every file decodes, enough usable text to split and to fill one training window) before anything is
written. Only then is `lyrics.corpus` replaced: the new folder is built beside it and swapped in with
one rename, so a failed or killed import leaves the old corpus exactly as it was. Imports replace,
never add: to train on several sources, put them in one folder and import that.
"""

import argparse
import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path

from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.common.params import load_params, parse_set_args, task_section
from tasks.lyrics.clean import LYRIC_SUFFIXES, corpus_files
from tasks.preflight import check_lyrics

HINT = "pass a lyrics .txt/.lrc file or a folder of them (make run LYRICS=path)"


def source_files(source: Path) -> list[Path]:
    """The lyric files PATH stands for, or a one-line error when it is not a lyrics file or folder."""
    if not source.exists():
        raise PipelineError(f"{source}: not found; {HINT}")
    if source.is_file() and source.suffix.lower() not in LYRIC_SUFFIXES:
        raise PipelineError(f"{source}: not a .txt or .lrc file; {HINT}")
    return corpus_files(source)  # a folder without lyric files: a one-line error


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL):  # an old kernel, or a filesystem without it
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_in(new: Path, target: Path) -> None:
    """Put the folder `new` at `target`, the old `target` (if any) removed. With an exchange the
    corpus is the old one or the new one at every instant; without it there is a moment between two
    renames with none, which `remove_leftovers` repairs at the next import."""
    if not target.exists():
        new.rename(target)
    elif exchange(new, target):
        shutil.rmtree(new)  # now the old corpus
    else:
        old = new.with_name(new.name.replace(".import-", ".old-"))
        target.rename(old)
        new.rename(target)
        shutil.rmtree(old)


def remove_leftovers(target: Path) -> None:
    """Clean up after an import that was killed: half-built folders go; a corpus moved aside by the
    two-rename swap (no corpus in place) is put back."""
    for leftover in sorted(target.parent.glob(f".{target.name}.old-*")):
        if not target.exists():
            leftover.rename(target)
        else:
            shutil.rmtree(leftover)
    for leftover in target.parent.glob(f".{target.name}.import-*"):
        shutil.rmtree(leftover)


def copy_corpus(files: list[Path], source: Path, dest: Path) -> None:
    """The lyric files into `dest`, keeping their paths below a source folder."""
    for path in files:
        rel = path.relative_to(source) if source.is_dir() else Path(path.name)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / rel)


def import_corpus(source: str | Path, lp) -> dict:
    """Check `source`, then replace the corpus folder `lp.corpus` with its lyric files."""
    source, target = Path(source), Path(lp.corpus)
    if target.is_file() or (not target.exists() and target.suffix.lower() in LYRIC_SUFFIXES):
        raise PipelineError(
            f"lyrics.corpus is a file ({target}); point lyrics.corpus at a folder (e.g. data/raw/lyrics) to import into"
        )
    files = source_files(source)
    found = check_lyrics(source, lp)  # the run's own checks, on the new corpus, before anything is written
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    replaced = sum(1 for p in target.rglob("*") if p.is_file()) if target.is_dir() else 0
    new = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.import-"))
    try:
        copy_corpus(files, source, new)
        new.chmod(0o755)  # mkdtemp makes it 0700; the corpus folder is a normal folder
        swap_in(new, target)
    finally:
        if new.exists():
            shutil.rmtree(new)
    return {"source": str(source), "target": str(target), "files": len(files), "replaced": replaced, **found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("path", help="a lyrics .txt/.lrc file or a folder of them")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one param (repeatable)")
    args = parser.parse_args()
    lp = task_section(load_params(args.params, parse_set_args(args.set)), "lyrics")
    done = import_corpus(args.path, lp)
    before = f"replaced its {done['replaced']} file(s)" if done["replaced"] else "it was empty before"
    print(
        f"imported {done['source']} into {done['target']} ({done['files']} file(s), {done['usable_lines']} usable "
        f"lines); {before}"
    )


if __name__ == "__main__":
    run_cli(main)
