"""Cleaning the ingested review table: rules (tasks/text/review_rules.py), then empty / too short
reviews, every copy of a text that occurs with conflicting labels, and exact duplicates dropped,
each counted in the report, so no identical text can reach two splits or teach two answers.

The stage streams (`clean_file`): the rules run per record batch of `reviews.clean.batch_rows`
rows, the cleaned rows go to a temporary Parquet beside the output, and duplicates and conflicts
are decided on a 64-bit hash of each cleaned text held in numpy arrays, never on the texts
themselves; a second pass over the temporary file writes the rows kept. The flows on Dask run the
rules per shard of rows on the cluster (`clean_batch`) and the rest in the flow process
(`clean_file` with `cleaned`). `clean_reviews` does the same in memory, for a table already loaded
(the pre-flight check)."""

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.common.atomic import parquet_writer, temp_path_beside
from tasks.common.errors import PipelineError
from tasks.common.progress import Tracker
from tasks.text.review_rules import review_rules

log = logging.getLogger(__name__)

# Rows per record batch when params set no `reviews.clean.batch_rows`. The batch's Python strings
# are most of the stage's memory, so a batch well under a small corpus keeps memory flat from it up.
BATCH_ROWS = 16384


def apply_rules(raw_texts: list[str | None], rules) -> tuple[list[str], dict[str, Counter], int]:
    """Each text through the rules in order; a rule that leaves nothing drops it (""), counted
    under that rule. Returns the texts, per-rule counts and how many were empty in the input."""
    counts = {name: Counter() for name, _ in rules}
    texts, empty = [], 0
    for text in raw_texts:
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
    return texts, counts, empty


def without_conflicts(keep: list[int], texts: list[str], labels: list) -> tuple[list[int], int, int]:
    """Rows of `keep` whose text never occurs with another label; (rows, rows dropped, texts dropped)."""
    label_sets: dict[str, set] = {}
    for i in keep:
        label_sets.setdefault(texts[i], set()).add(labels[i])
    conflicting = {t for t, s in label_sets.items() if len(s) > 1}
    kept = [i for i in keep if texts[i] not in conflicting]
    return kept, len(keep) - len(kept), len(conflicting)


def without_duplicates(keep: list[int], texts: list[str], labels: list) -> list[int]:
    """The first row of each (text, label) among `keep`."""
    seen, first = set(), []
    for i in keep:
        if (texts[i], labels[i]) not in seen:
            seen.add((texts[i], labels[i]))
            first.append(i)
    return first


def rules_report(
    counts: dict[str, Counter], empty: int, short: int, conflict_rows: int, conflict_texts: int, duplicates: int
) -> dict:
    """The report's `rules`: rows changed and dropped by each step, in the order they ran."""
    rules = {"empty": {"changed": 0, "dropped": empty}}
    rules.update({name: {"changed": c["changed"], "dropped": c["dropped"]} for name, c in counts.items()})
    rules["min_chars"] = {"changed": 0, "dropped": short}
    rules["conflicting_labels"] = {"changed": 0, "dropped": conflict_rows, "texts": conflict_texts}
    rules["duplicates"] = {"changed": 0, "dropped": duplicates}
    return rules


def nothing_left(source_name: str) -> PipelineError:
    return PipelineError(
        f"{source_name}: no reviews left after cleaning; check reviews.input.text_column holds the review texts"
    )


def clean_reviews(table: pa.Table, cfg, source_name: str = "") -> tuple[pa.Table, dict]:
    """Clean the review table (id, source, text, label, label_name) in memory: rules, then empty /
    too short, conflicting labels and exact duplicates dropped, each counted in the report."""
    texts, counts, empty = apply_rules(table.column("text").to_pylist(), review_rules(cfg))
    labels = table.column("label").to_pylist()
    short = sum(1 for t in texts if t and len(t) < cfg.min_chars)
    keep = [i for i, t in enumerate(texts) if len(t) >= cfg.min_chars]
    conflict_rows = conflict_texts = 0
    if cfg.drop_conflicts:
        keep, conflict_rows, conflict_texts = without_conflicts(keep, texts, labels)
    unique = without_duplicates(keep, texts, labels) if cfg.drop_duplicates else keep
    duplicates, keep = len(keep) - len(unique), unique
    if not keep:
        raise nothing_left(source_name)
    out = table.take(pa.array(keep, pa.int64())).set_column(
        table.schema.get_field_index("text"), "text", pa.array([texts[i] for i in keep], pa.string())
    )
    names = out.column("label_name").to_pylist()
    classes = {n: names.count(n) for n in sorted(set(names))}
    rules = rules_report(counts, empty, short, conflict_rows, conflict_texts, duplicates)
    return out, {"lines_in": table.num_rows, "lines_out": out.num_rows, "classes": classes, "rules": rules}


# --- streaming ------------------------------------------------------------------------------------


def text_hashes(texts: list[str]) -> np.ndarray:
    """A stable 64-bit hash of each text (blake2b; Python's hash() is salted per process). Two
    different texts share one with odds of about n²/2⁶⁵: 3e-8 for a million texts."""
    digests = b"".join(hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest() for t in texts)
    return np.frombuffer(digests, dtype="<u8")


def keep_mask(hashes: np.ndarray, labels: np.ndarray, drop_conflicts: bool, drop_duplicates: bool):
    """Which rows survive, in row order, as `clean_reviews` decides on the texts: every row of a
    text that has two labels or more goes (conflicts), then all but the first row of each (text,
    label) (duplicates). Returns (mask, conflict rows, conflict texts, duplicate rows)."""
    n = len(hashes)
    if not n:
        return np.zeros(0, bool), 0, 0, 0
    # Sorted by text, then label; lexsort is stable, so equal rows stay in row order: first is first.
    order = np.lexsort((labels, hashes))
    h = hashes[order]
    text_start = np.r_[True, h[1:] != h[:-1]]
    del h  # the sort's copies are the peak of the stage's memory: one at a time
    lab = labels[order]
    pair_start = text_start | np.r_[True, lab[1:] != lab[:-1]]
    starts = np.flatnonzero(text_start)
    ends = np.r_[starts[1:], n] - 1
    # Labels are sorted within a text: it has two labels or more when its first and last differ.
    conflicting = lab[starts] != lab[ends]
    conflicted = np.repeat(conflicting, ends - starts + 1) if drop_conflicts else np.zeros(n, bool)
    duplicate = ~pair_start & ~conflicted if drop_duplicates else np.zeros(n, bool)
    mask = np.empty(n, bool)
    mask[order] = ~(conflicted | duplicate)
    conflict_texts = int(conflicting.sum()) if drop_conflicts else 0
    return mask, int(conflicted.sum()), conflict_texts, int(duplicate.sum())


def batch_rows_of(cfg) -> int:
    """Rows per record batch (`reviews.clean.batch_rows`, if set)."""
    return getattr(cfg, "batch_rows", BATCH_ROWS)


def release_unused() -> None:
    """Hand Arrow's freed pages back to the system after a batch: its default allocator (mimalloc)
    keeps them otherwise, and memory would grow with the number of batches read, not their size."""
    pa.default_memory_pool().release_unused()


def open_input(path: str | Path) -> pq.ParquetFile:
    if not Path(path).is_file():
        raise PipelineError(f"{path}: clean input not found; run the ingest stage first or fix reviews.clean.input")
    # A 1 MiB read buffer decodes page by page; unbuffered reads load whole column chunks.
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)


def clean_batch(batch: pa.RecordBatch, cfg, rules) -> dict:
    """The first pass on one record batch of the ingested table: its texts through the rules, and
    the rows long enough (`rows`, with their cleaned text), their text hashes and labels, and the
    rules' counts. A function of the batch alone, so the flows on Dask run it per shard of rows;
    duplicates and conflicts, which need every row, are decided afterwards on the hashes."""
    texts, counts, empty = apply_rules(batch.column("text").to_pylist(), rules)
    short = sum(1 for t in texts if t and len(t) < cfg.min_chars)
    kept = [i for i, t in enumerate(texts) if len(t) >= cfg.min_chars]
    texts = [texts[i] for i in kept]
    text_at = batch.schema.get_field_index("text")
    rows = batch.take(pa.array(kept, pa.int64())).set_column(text_at, "text", pa.array(texts, pa.string()))
    return {
        "rows": rows,
        "hashes": text_hashes(texts),
        "labels": rows.column("label").to_numpy(),
        "counts": counts,
        "empty": empty,
        "short": short,
        "rows_in": batch.num_rows,
    }


def clean_batches(batches: Iterable[pa.RecordBatch], cfg) -> Iterator[dict]:
    """`clean_batch` of each batch, with the rules `cfg` switches on."""
    rules = review_rules(cfg)
    return (clean_batch(batch, cfg, rules) for batch in batches)


def clean_pass(
    pf: pq.ParquetFile, cfg, scratch: Path, batch_rows: int, cleaned: Iterable[dict] | None = None
) -> tuple[dict, np.ndarray, np.ndarray]:
    """The first pass: every batch through the rules (`clean_batch`); the rows long enough, with
    their cleaned text, to `scratch`, and their text hash and label to numpy arrays. Returns (the
    rules' counts, hashes, labels). `cleaned`: the `clean_batch` results of every row in file order
    when computed elsewhere (the flows' Dask shards), batched any way: `write_kept` rereads
    `scratch` in batches of `batch_rows` whatever its row groups, so the output is the same."""
    rules = review_rules(cfg)
    if cleaned is None:
        cleaned = clean_batches(pf.iter_batches(batch_size=batch_rows), cfg)
    text_at = pf.schema_arrow.get_field_index("text")
    schema = pf.schema_arrow.set(text_at, pa.field("text", pa.string()))
    total = pf.metadata.num_rows
    hashes, labels = np.empty(total, "<u8"), np.empty(total, np.int32)  # filled up to `kept`
    counts: dict[str, Counter] = {name: Counter() for name, _ in rules}
    empty = short = kept = 0
    with (
        pq.ParquetWriter(scratch, schema, compression="zstd") as writer,
        Tracker(total, "clean", "reviews", log) as done,
    ):
        for part in cleaned:
            for name, c in part["counts"].items():
                counts[name].update(c)
            empty += part["empty"]
            short += part["short"]
            writer.write_batch(part["rows"])
            n = part["rows"].num_rows
            hashes[kept : kept + n] = part["hashes"]
            labels[kept : kept + n] = part["labels"]
            kept += n
            done.update(part["rows_in"])
            release_unused()
    return {"counts": counts, "empty": empty, "short": short}, hashes[:kept], labels[:kept]


def write_kept(scratch: Path, mask: np.ndarray, output: str | Path, batch_rows: int) -> Counter:
    """The second pass: the rows of `scratch` that `mask` keeps, in order, to `output` (atomically);
    returns the rows per class name."""
    pf = pq.ParquetFile(scratch, pre_buffer=False, buffer_size=1 << 20)
    classes, start = Counter(), 0
    with parquet_writer(output, pf.schema_arrow) as writer:
        for batch in pf.iter_batches(batch_size=batch_rows):
            kept = batch.filter(pa.array(mask[start : start + batch.num_rows]))
            start += batch.num_rows
            writer.write_batch(kept)
            classes.update(kept.column("label_name").to_pylist())
            release_unused()
    return classes


def clean_file(cfg, batch_rows: int | None = None, cleaned: Iterable[dict] | None = None) -> dict:
    """`cfg.input` → `cfg.output`, streamed; returns the report (the same rows, order and counts
    as `clean_reviews` on the whole table). `cleaned`: as in `clean_pass`."""
    batch_rows = batch_rows or batch_rows_of(cfg)
    pf = open_input(cfg.input)
    with temp_path_beside(cfg.output, suffix=".cleaned.tmp") as scratch:  # removed however the stage ends
        first, hashes, labels = clean_pass(pf, cfg, scratch, batch_rows, cleaned)
        mask, conflict_rows, conflict_texts, duplicates = keep_mask(
            hashes, labels, cfg.drop_conflicts, cfg.drop_duplicates
        )
        del hashes, labels  # only the mask is needed from here on
        if not mask.any():
            raise nothing_left(cfg.input)
        classes = write_kept(scratch, mask, cfg.output, batch_rows)
    rules = rules_report(first["counts"], first["empty"], first["short"], conflict_rows, conflict_texts, duplicates)
    return {
        "lines_in": pf.metadata.num_rows,
        "lines_out": int(mask.sum()),
        "classes": dict(sorted(classes.items())),
        "rules": rules,
    }


def clean(tp) -> tuple[pa.Table, dict]:
    """The clean stage of this task in memory: the ingested table → (table, report)."""
    return clean_reviews(pq.read_table(tp.clean.input), tp.clean, tp.clean.input)
