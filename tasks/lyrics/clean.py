"""Cleaning a lyrics corpus: raw lyric files (.txt / .lrc) → one row per kept line (id, source,
line_no, text), plus a report of lines in/out per rule (tasks/text/lyric_rules.py)."""

from collections import Counter
from pathlib import Path

import pyarrow as pa

from tasks.common.errors import PipelineError
from tasks.common.textio import read_text_file
from tasks.text.lyric_rules import lyric_rules, repeated_line_mask

LYRIC_SUFFIXES = {".txt", ".lrc"}
CORPUS_KEY = b"corpus"  # Parquet schema metadata: the corpus path a lyrics table was cleaned from


MISSING_CORPUS_FIX = (
    "put .txt/.lrc lyric files there (e.g. cp ../shared/datasets/jaychou_lyrics.txt data/raw/lyrics/) "
    "or run `make run LYRICS=path/to/lyrics`"
)


def corpus_files(corpus: str | Path) -> list[Path]:
    """The lyric files of a corpus path: the file itself, or every .txt/.lrc under a folder, sorted
    so ids are stable across machines."""
    path = Path(corpus)
    if path.is_file():
        return [path]
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LYRIC_SUFFIXES)
        if path.is_dir()
        else []
    )
    if not files:
        raise PipelineError(f"no lyrics corpus at {path}: {MISSING_CORPUS_FIX}")
    return files


def drop_summary(totals: dict[str, Counter]) -> str:
    """`3 no_words, 1 blank`: what dropped the lines, most first."""
    dropped = sorted(((c["dropped"], name) for name, c in totals.items() if c["dropped"]), reverse=True)
    return ", ".join(f"{n} {name}" for n, name in dropped) or "nothing"


def clean_lines(lines: list[str], cfg) -> tuple[list[int], list[str], dict]:
    """Apply the rules to one file's lines. Returns the kept line numbers (1-based), their cleaned
    text, and per-rule counts {"rule": {"changed": n, "dropped": n}}."""
    rules = lyric_rules(cfg)
    counts = {"blank": Counter(), **{name: Counter() for name, _ in rules}}
    kept_no, kept = [], []
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            counts["blank"]["dropped"] += 1  # song separators, not a rule's doing
            continue
        for name, rule in rules:
            new = rule(line)
            if not new:
                counts[name]["dropped"] += 1
                break
            if new != line:
                counts[name]["changed"] += 1
            line = new
        else:
            kept_no.append(no)
            kept.append(line)
    return kept_no, kept, counts


def clean_corpus(corpus: str | Path, cfg) -> tuple[pa.Table, dict]:
    """Clean every file of the corpus into one table (id, source, line_no, text) and a report."""
    ids, sources, line_nos, texts = [], [], [], []
    totals: dict[str, Counter] = {}
    lines_in = 0
    for path in corpus_files(corpus):
        lines = read_text_file(path).splitlines()
        lines_in += len(lines)
        nos, kept, counts = clean_lines(lines, cfg)
        for name, c in counts.items():
            totals.setdefault(name, Counter()).update(c)
        source = path.name
        ids += [f"{source}:{n}" for n in nos]
        sources += [source] * len(nos)
        line_nos += nos
        texts += kept
    keep = repeated_line_mask(texts, cfg.drop_repeated)
    totals["repeated"] = Counter(dropped=keep.count(False))
    rows = [i for i, k in enumerate(keep) if k]
    if not rows:
        raise PipelineError(
            f"{corpus}: no usable lyric lines left after cleaning ({lines_in} lines read: {drop_summary(totals)}); "
            "put lyrics in it, lines with Chinese or Latin words, one lyric line per line"
        )
    table = pa.table(
        {
            "id": [ids[i] for i in rows],
            "source": [sources[i] for i in rows],
            "line_no": pa.array([line_nos[i] for i in rows], pa.int32()),
            "text": [texts[i] for i in rows],
        },
        # The user's input, carried through tokenize to the split, whose "too small" errors name it.
        metadata={CORPUS_KEY: str(corpus)},
    )
    report = {
        "lines_in": lines_in,
        "lines_out": table.num_rows,
        "files": len(set(sources)),
        "rules": {name: {"changed": c["changed"], "dropped": c["dropped"]} for name, c in totals.items()},
    }
    return table, report


def clean(tp) -> tuple[pa.Table, dict]:
    """The clean stage of this task: the configured corpus → (table, report)."""
    return clean_corpus(tp.corpus, tp.clean)
