"""Cleaning the ingested review table: rules (tasks/text/review_rules.py), then empty / too short
reviews, every copy of a text that occurs with conflicting labels, and exact duplicates dropped,
each counted in the report, so no identical text can reach two splits or teach two answers."""

from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.common.errors import PipelineError
from tasks.text.review_rules import review_rules


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


def clean_reviews(table: pa.Table, cfg, source_name: str = "") -> tuple[pa.Table, dict]:
    """Clean the review table (id, source, text, label, label_name): rules, then empty / too short,
    conflicting labels and exact duplicates dropped, each counted in the report."""
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
        raise PipelineError(
            f"{source_name}: no reviews left after cleaning; check reviews.input.text_column holds the review texts"
        )
    rules = {"empty": {"changed": 0, "dropped": empty}}
    rules.update({name: {"changed": c["changed"], "dropped": c["dropped"]} for name, c in counts.items()})
    rules["min_chars"] = {"changed": 0, "dropped": short}
    rules["conflicting_labels"] = {"changed": 0, "dropped": conflict_rows, "texts": conflict_texts}
    rules["duplicates"] = {"changed": 0, "dropped": duplicates}
    out = table.take(pa.array(keep, pa.int64())).set_column(
        table.schema.get_field_index("text"), "text", pa.array([texts[i] for i in keep], pa.string())
    )
    names = out.column("label_name").to_pylist()
    classes = {n: names.count(n) for n in sorted(set(names))}
    return out, {"lines_in": table.num_rows, "lines_out": out.num_rows, "classes": classes, "rules": rules}


def clean(tp) -> tuple[pa.Table, dict]:
    """The clean stage of this task: the ingested table → (table, report)."""
    return clean_reviews(pq.read_table(tp.clean.input), tp.clean, tp.clean.input)
