"""Cleaning the ingested review table: rules (tasks/text/review_rules.py), then empty / too short
reviews, every copy of a text that occurs with conflicting labels, and exact duplicates dropped,
each counted in the report, so no identical text can reach two splits or teach two answers."""

from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.common.errors import PipelineError
from tasks.text.review_rules import review_rules


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
        raise PipelineError(
            f"{source_name}: no reviews left after cleaning; check reviews.input.text_column holds the review texts"
        )
    rule_report = {"empty": {"changed": 0, "dropped": empty}}
    rule_report.update({name: {"changed": c["changed"], "dropped": c["dropped"]} for name, c in counts.items()})
    rule_report["min_chars"] = {"changed": 0, "dropped": len(short)}
    rule_report["conflicting_labels"] = {"changed": 0, "dropped": conflict_rows, "texts": len(conflicting)}
    rule_report["duplicates"] = {"changed": 0, "dropped": duplicates}
    out = table.take(pa.array(keep, pa.int64())).set_column(
        table.schema.get_field_index("text"), "text", pa.array([texts[i] for i in keep], pa.string())
    )
    names = out.column("label_name").to_pylist()
    report = {
        "lines_in": table.num_rows,
        "lines_out": out.num_rows,
        "classes": {n: names.count(n) for n in sorted(set(names))},
        "rules": rule_report,
    }
    return out, report


def clean(tp) -> tuple[pa.Table, dict]:
    """The clean stage of this task: the ingested table → (table, report)."""
    return clean_reviews(pq.read_table(tp.clean.input), tp.clean, tp.clean.input)
