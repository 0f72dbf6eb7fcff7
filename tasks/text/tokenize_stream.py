"""The tokenize stage's streaming: Parquet read and written in batches of `tokenize.batch_rows`
rows, segmented in `tokenize.workers` processes, so memory stays flat however large the corpus is;
the output is the same table whatever the number of workers. The Prefect flows on Dask run
`tokenize_shard` per row range of `plan_shards` and merge with `write_tables`; their other stages
on Dask shard with `row_ranges` and `read_rows` too."""

import contextlib
import logging
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.common.atomic import atomic_path
from tasks.common.errors import PipelineError
from tasks.common.parallel import ordered_map, start_method, usable_cores
from tasks.common.progress import Tracker
from tasks.common.sections import Tokenize
from tasks.text.segment import output_schema, rjieba_tokenizer, segmenter, tokenize_batch, user_dict_lines

log = logging.getLogger(__name__)


def _warm_up(cfg: Tokenize) -> None:
    """Worker initializer: load the dictionary once per process, not once per batch. An error here
    would only break the pool; the first batch raises it again, and that reaches the caller."""
    with contextlib.suppress(PipelineError):
        segmenter(cfg.level, cfg.hmm, cfg.user_dict, cfg.backend)


def open_input(path: str) -> pq.ParquetFile:
    if not Path(path).is_file():
        raise PipelineError(
            f"{path}: tokenize input not found; run the clean stage first or fix tokenize.input in params.yaml"
        )
    # Unbuffered or pre-buffered reads load a whole column chunk (the whole column, when the file has
    # one row group); a 1 MiB read buffer decodes page by page, so memory does not grow with the file.
    pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    if "text" not in pf.schema_arrow.names:
        raise PipelineError(
            f"{path}: no `text` column to tokenize; rerun the clean stage or fix tokenize.input in params.yaml"
        )
    return pf


def resolved_workers(cfg: Tokenize, rows: int) -> int:
    """Processes worth starting: `workers` (0 = every usable core), never more than there are
    batches; 1 means in-process (a corpus of one batch is done before a worker would be up)."""
    workers = cfg.workers or usable_cores()
    return max(1, min(workers, -(-rows // cfg.batch_rows)))


def tokenized_batches(pf: pq.ParquetFile, cfg: Tokenize, keep_text: bool) -> Iterator[pa.RecordBatch]:
    """The output batches in input order, segmented in-process or in worker processes."""
    batches = pf.iter_batches(batch_size=cfg.batch_rows)
    workers = resolved_workers(cfg, pf.metadata.num_rows)
    if workers == 1:
        return (tokenize_batch(b, cfg, keep_text) for b in batches)
    if cfg.level == "word":  # a missing package or a bad user dictionary: fail here, before the workers start
        if cfg.backend == "rjieba":
            rjieba_tokenizer(cfg.user_dict)  # cheap to build, unlike jieba's dictionary
        elif cfg.user_dict:
            user_dict_lines(cfg.user_dict)
    method = start_method()
    if method == "fork":  # load the dictionary once here; every forked worker inherits it
        segmenter(cfg.level, cfg.hmm, cfg.user_dict, cfg.backend)
    log.info("tokenize: %d worker processes (%s), %d rows per batch", workers, method, cfg.batch_rows)
    return ordered_map(
        partial(tokenize_batch, cfg=cfg, keep_text=keep_text), batches, workers, initializer=_warm_up, initargs=(cfg,)
    )


def write_batches(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: str, total_rows: int | None = None
) -> dict:
    """Stream batches into Parquet (zstd, one row group per batch) via a temp file renamed at the end;
    returns the row and token counts, counted on the way. `total_rows` (the input's, from its
    Parquet metadata) is what the progress display counts towards."""
    rows = n_tokens = 0
    with (
        atomic_path(path) as tmp,
        pq.ParquetWriter(tmp, schema, compression="zstd") as writer,
        Tracker(total_rows, "tokenize", "rows", log) as done,
    ):
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
            done.update(batch.num_rows)
            n_tokens += pc.sum(pc.list_value_length(batch.column("tokens"))).as_py() or 0
    return {"rows": rows, "tokens": n_tokens}


def tokenize_file(cfg: Tokenize, keep_text: bool = False) -> dict:
    """`cfg.input` → `cfg.output`, streamed; returns the row and token counts."""
    pf = open_input(cfg.input)
    schema, rows = output_schema(pf.schema_arrow, keep_text), pf.metadata.num_rows
    return write_batches(tokenized_batches(pf, cfg, keep_text), schema, cfg.output, rows)


def row_ranges(rows: int, shard_rows: int, batch_rows: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) covering `rows` rows once, in order: about `shard_rows` each, rounded
    up to whole batches of `batch_rows`. The shard plan of every stage the flows fan out on Dask."""
    step = max(1, -(-shard_rows // batch_rows)) * batch_rows
    return [(start, min(start + step, rows)) for start in range(0, rows, step)]


def plan_shards(cfg: Tokenize, shard_rows: int) -> list[tuple[int, int]]:
    """The tokenize input's row ranges. Shards are whole batches, so the merged file has the same
    row groups as a local run."""
    return row_ranges(open_input(cfg.input).metadata.num_rows, shard_rows, cfg.batch_rows)


def read_rows(
    pf: pq.ParquetFile, start: int, stop: int, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Rows [start, stop) in batches of `batch_rows` counted from `start`, only `columns` (all when
    None), reading only the row groups that hold them. A shard that starts on a whole batch so gets
    the batches a read of the whole file has, whatever the file's row groups (a cleaned file's vary
    in size): the merged output then has a local run's row groups."""
    groups, first, offset = [], 0, 0
    for i in range(pf.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if offset < stop and offset + n > start:
            first = first if groups else offset
            groups.append(i)
        offset += n
    batches = pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=columns)
    return rebatched(rows_between(batches, start - first, stop - first), batch_rows)


def rows_between(batches: Iterable[pa.RecordBatch], start: int, stop: int) -> Iterator[pa.RecordBatch]:
    """The rows [start, stop) of the stream `batches`, sliced out of the batches that hold them."""
    position = 0
    for batch in batches:
        lo, hi = max(start - position, 0), min(stop - position, batch.num_rows)
        if lo < hi:
            yield batch.slice(lo, hi - lo)
        position += batch.num_rows
        if position >= stop:
            return


def rebatched(batches: Iterable[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of `batches` in batches of exactly `batch_rows` rows (the last one fewer)."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if not pending and batch.num_rows == batch_rows:  # already whole: no copy
            yield batch
            continue
        pending.append(batch)
        rows += batch.num_rows
        while rows >= batch_rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, batch_rows).combine_chunks().to_batches()[0]
            pending = table.slice(batch_rows).to_batches() if rows > batch_rows else []
            rows -= batch_rows
    if rows:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def tokenize_shard(cfg: Tokenize, start: int, stop: int, keep_text: bool = False) -> pa.Table:
    """One shard's output rows, segmented in this process. It returns a table rather than writing a
    file, so a cluster worker needs to read `cfg.input` but never to write beside it."""
    pf = open_input(cfg.input)
    batches = [tokenize_batch(b, cfg, keep_text) for b in read_rows(pf, start, stop, cfg.batch_rows)]
    return pa.Table.from_batches(batches, output_schema(pf.schema_arrow, keep_text))


def write_tables(tables: Iterable[pa.Table], cfg: Tokenize, keep_text: bool = False) -> dict:
    """Merge shard outputs, in the order given, into `cfg.output` (atomically)."""
    pf = open_input(cfg.input)
    batches = (b for t in tables for b in t.to_batches(max_chunksize=cfg.batch_rows))
    counts = write_batches(batches, output_schema(pf.schema_arrow, keep_text), cfg.output, pf.metadata.num_rows)
    log_counts(cfg, counts, "shards")
    return counts


def log_counts(cfg: Tokenize, counts: dict, how: str = "") -> None:
    """The tokenize stage's summary line, the same whichever way it ran."""
    how = f", {how}" if how else ""
    log.info("tokenize (%s, %s%s): %d rows, %d tokens -> %s", cfg.level, cfg.backend, how, counts["rows"],
             counts["tokens"], cfg.output)  # fmt: skip
