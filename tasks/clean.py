"""Stage `clean`: raw lyric files (.txt / .lrc), or the ingested review table → clean.parquet, one
row per kept line / review, plus a report of rows in/out per rule.

Reviews also lose exact duplicates and every copy of a text that occurs with conflicting labels
(both counted), so no identical text can reach two splits or teach two answers.

    python -m tasks.clean [--task lyrics|reviews] [--params params.yaml] [--set lyrics.clean.min_chars=3]
"""

import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.atomic import write_json, write_parquet
from tasks.cli import stage_main
from tasks.errors import PipelineError
from tasks.params import task_section
from tasks.review_rules import review_rules
from tasks.text_rules import lyric_rules, repeated_line_mask
from tasks.textio import read_text_file

log = logging.getLogger(__name__)
LYRIC_SUFFIXES = {".txt", ".lrc"}
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
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LYRIC_SUFFIXES) if path.is_dir() else []
    if not files:
        raise PipelineError(f"no lyrics corpus at {path}: {MISSING_CORPUS_FIX}")
    return files


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
        raise PipelineError(f"{corpus}: no lyric lines left after cleaning; check the file holds Chinese lyrics")
    table = pa.table({
        "id": [ids[i] for i in rows],
        "source": [sources[i] for i in rows],
        "line_no": pa.array([line_nos[i] for i in rows], pa.int32()),
        "text": [texts[i] for i in rows],
    })
    report = {
        "lines_in": lines_in,
        "lines_out": table.num_rows,
        "files": len(set(sources)),
        "rules": {name: {"changed": c["changed"], "dropped": c["dropped"]} for name, c in totals.items()},
    }
    return table, report


def clean_reviews(table: pa.Table, cfg, source_name: str = "") -> tuple[pa.Table, dict]:
    """Clean the review table (id, source, text, label, label_name): rules, then empty / too short,
    conflicting labels and exact duplicates dropped, each counted in the report."""
    rules = review_rules(cfg)
    counts = {name: Counter() for name, _ in rules}
    texts, empty = [], 0
    for text in table.column("text").to_pylist():
        text = text or ""
        if not text.strip():
            empty += 1  # empty in the input: nothing for a rule to do
            text = ""
        for name, rule in rules:
            if not text:
                break
            new = rule(text)
            if not new.strip():
                counts[name]["dropped"] += 1  # e.g. a review that was only a link
                new = ""
            elif new != text:
                counts[name]["changed"] += 1
            text = new
        texts.append(text)
    labels = table.column("label").to_pylist()
    short = [i for i, t in enumerate(texts) if t and len(t) < cfg.min_chars]
    keep = [i for i, t in enumerate(texts) if len(t) >= cfg.min_chars]
    label_sets: dict[str, set] = {}
    for i in keep:
        label_sets.setdefault(texts[i], set()).add(labels[i])
    conflicting = {t for t, s in label_sets.items() if len(s) > 1} if cfg.drop_conflicts else set()
    conflict_rows = sum(texts[i] in conflicting for i in keep)
    keep = [i for i in keep if texts[i] not in conflicting]
    duplicates, seen = 0, set()
    if cfg.drop_duplicates:
        first = []
        for i in keep:
            key = (texts[i], labels[i])
            if key in seen:
                duplicates += 1
            else:
                seen.add(key)
                first.append(i)
        keep = first
    if not keep:
        raise PipelineError(f"{source_name}: no reviews left after cleaning; check reviews.input.text_column "
                            "holds the review texts")
    rule_report = {"empty": {"changed": 0, "dropped": empty}}
    rule_report.update({name: {"changed": c["changed"], "dropped": c["dropped"]} for name, c in counts.items()})
    rule_report["min_chars"] = {"changed": 0, "dropped": len(short)}
    rule_report["conflicting_labels"] = {"changed": 0, "dropped": conflict_rows, "texts": len(conflicting)}
    rule_report["duplicates"] = {"changed": 0, "dropped": duplicates}
    out = table.take(pa.array(keep, pa.int64())).set_column(
        table.schema.get_field_index("text"), "text", pa.array([texts[i] for i in keep], pa.string()))
    names = out.column("label_name").to_pylist()
    report = {
        "lines_in": table.num_rows,
        "lines_out": out.num_rows,
        "classes": {n: names.count(n) for n in sorted(set(names))},
        "rules": rule_report,
    }
    return out, report


def run(params, task: str = "lyrics") -> dict:
    tp = task_section(params, task)
    cfg = tp.clean
    if task == "lyrics":
        table, report = clean_corpus(tp.corpus, cfg)
    else:
        table, report = clean_reviews(pq.read_table(cfg.input), cfg, cfg.input)
    write_parquet(table, cfg.output)
    write_json(report, cfg.report)
    log.info("clean: %d %s in, %d out -> %s", report["lines_in"], "lines" if task == "lyrics" else "reviews",
             report["lines_out"], cfg.output)
    return report


if __name__ == "__main__":
    stage_main(run, __doc__)
