"""Stage `split`: tokens.parquet → split.parquet with a `split` column (train / val / test),
deterministic for a seed and leak-free. Lyrics keep whole songs (or blocks of lines) together and
drop val/test lines that repeat a train line; reviews are stratified by label, identical texts
kept together.

Rows are assigned by a stable 64-bit hash of their key (a review's normalised text, a song's file,
a block of lines) keyed with the seed (`stable_hashes`), never by row order or a shuffle, so the
split does not depend on where a row sits in the file, how it is batched or how many workers read it.

The file is streamed in two passes of `batch_rows` rows: the first reads only the columns the
task's plan needs (`PLAN_COLUMNS`), hashes each batch (`hash_batch`: the costly part, which the
flows on Dask run per shard on the cluster) and fixes where each row goes (`plan_from_parts`: every
error on the input is raised here, before anything is written); the second reads every column and
writes each batch with its split (`apply_split`). The task's `check_split` then checks the result
(no text in two splits) before the output appears.

    python -m tasks.split [--task lyrics|reviews] [--params params.yaml] [--set lyrics.split.seed=7]
"""

import hashlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.catalog import stage_module
from tasks.common.atomic import parquet_writer
from tasks.common.cli import stage_main
from tasks.common.params import task_section

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")  # the codes 0, 1, 2 of `split_codes` / `split_array`
# Rows per batch (`<task>.split.batch_rows`). One batch (its columns, the writer's buffers, its texts
# as Python strings) is what the peak grows with, the rest of the stage holds 17 bytes a row:
# measured on 867k reviews, 16k-row batches peak at 1.2x the RSS of splitting 17k reviews, 64k-row
# batches at 1.6x, and neither is faster.
DEFAULT_BATCH_ROWS = 16_384


def stable_hashes(keys: Iterable[str], seed: int) -> np.ndarray:
    """The 64-bit BLAKE2b of each key (UTF-8), keyed with the seed: the same on every machine,
    process and run (Python's `hash()` is salted per process), so a split made from it depends on
    the keys and the seed only. (n,) uint64."""
    keyed = hashlib.blake2b(digest_size=8, key=str(seed).encode())

    def digest(key: str) -> bytes:
        h = keyed.copy()  # copying the keyed state is twice as fast as keying anew
        h.update(key.encode())
        return h.digest()

    return np.frombuffer(b"".join(map(digest, keys)), dtype="<u8").astype(np.uint64)


def split_array(codes: np.ndarray) -> pa.Array:
    """The `split` column (strings) of split codes (0 train, 1 val, 2 test)."""
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), pa.array(SPLITS)).cast(pa.string())


def split_codes(column) -> np.ndarray:
    """The split codes (uint8: 0 train, 1 val, 2 test) of a `split` column."""
    return pc.index_in(column, value_set=pa.array(SPLITS)).to_numpy(zero_copy_only=False).astype(np.uint8)


def split_counts(codes: np.ndarray) -> dict[str, int]:
    return {name: int(n) for name, n in zip(SPLITS, np.bincount(codes, minlength=len(SPLITS)))}


def read_batches(path: str | Path, columns: list[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The rows of a Parquet file in order, `batch_rows` at a time (fewer at the end of a window),
    only `columns` (all when None). Row groups are read a window of about `batch_rows` rows at a
    time, a reader each: one reader over all the row groups keeps memory of those it has read, and
    its RSS grew with the file (pyarrow 25: +130 MB over 867k reviews' texts alone). After each
    batch, Arrow's allocator (mimalloc) gives back the pages the previous batches freed: it keeps
    them otherwise, and splitting 867k reviews peaked at 395 MB instead of 290."""
    pf = pq.ParquetFile(path)
    window, rows = [], 0
    for group in range(pf.num_row_groups):
        window.append(group)
        rows += pf.metadata.row_group(group).num_rows
        if rows >= batch_rows or group == pf.num_row_groups - 1:
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=window, columns=columns):
                yield batch
                pa.default_memory_pool().release_unused()
            window, rows = [], 0


def first_pass(task: str, cfg, source: str | Path, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[dict]:
    """The task's `hash_batch` of each batch of `source` (only its `PLAN_COLUMNS`), in file order."""
    impl = stage_module(task, "split")
    return (impl.hash_batch(batch, cfg) for batch in read_batches(source, impl.PLAN_COLUMNS, batch_rows))


def split_file(
    task: str,
    cfg,
    source: str | Path,
    output: str | Path,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    hashed: Iterable | None = None,
) -> dict:
    """Split the tokens file `source` into `output`, streaming (see the module docstring); returns
    the rows per split and what the task's `check_split` reports (reviews: class shares). `hashed`:
    the first pass's `hash_batch` results in file order when computed elsewhere (the flows' Dask
    shards); by default this process reads them (`first_pass`)."""
    impl = stage_module(task, "split")
    schema = pq.ParquetFile(source).schema_arrow
    if hashed is None:
        hashed = first_pass(task, cfg, source, batch_rows)
    plan = impl.plan_from_parts(hashed, cfg, str(source), schema)
    codes, start = [], 0
    with parquet_writer(output, schema.append(pa.field("split", pa.string()))) as writer:
        for batch in read_batches(source, None, batch_rows):
            out = impl.apply_split(batch, plan, start)
            writer.write_batch(out)
            codes.append(split_codes(out.column("split")))
            start += batch.num_rows
        written = np.concatenate(codes) if codes else np.zeros(0, np.uint8)
        report = impl.check_split(plan, written, str(source))  # raises before `output` appears
    return {"rows": split_counts(written), **report}


def run(params, task: str = "lyrics", hashed: Iterable | None = None) -> dict:
    """The stage; `hashed` as in `split_file` (the flows on Dask hash the shards on the cluster)."""
    cfg = task_section(params, task).split
    batch_rows = cfg.batch_rows
    summary = split_file(task, cfg, cfg.input, cfg.output, batch_rows, hashed)
    log.info("split: %s rows -> %s", summary["rows"], cfg.output)
    for name, shares in summary.get("class_shares", {}).items():
        log.info("split: %s class shares %s", name, ", ".join(f"{c} {s:.3f}" for c, s in shares.items()))
    return summary


if __name__ == "__main__":
    stage_main(run, __doc__)
