"""Where the flows' tasks run: Prefect's default runner in the flow process, or a Dask cluster
(`orchestration:` in params.yaml, or PIPELINE_DASK_ADDRESS). On Dask the data stages (clean for
reviews, tokenize, split, vocab) fan out as one task per shard of rows (`orchestration.shard_rows`);
what needs every row at once (duplicates, split's cut points, the vocabulary) and all writing stay
in the flow process, so the files are the ones a local run writes. Every other stage runs in the
flow process.
"""

import logging
import os
from collections import Counter
from collections.abc import Iterator

import prefect
import pyarrow as pa
import pyarrow.parquet as pq
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from tasks import clean, split, tokenize, vocab
from tasks.catalog import stage_module, task_package
from tasks.common.atomic import write_json
from tasks.common.errors import PipelineError
from tasks.common.params import task_section
from tasks.text import tokenize_stream
from tasks.text import vocab as text_vocab

log = logging.getLogger(__name__)

DASK_ADDRESS_ENV = "PIPELINE_DASK_ADDRESS"


def with_task_runner(flow: prefect.Flow, params) -> prefect.Flow:
    """`flow` on the task runner that params.orchestration (or PIPELINE_DASK_ADDRESS) asks for."""
    orchestration = params.orchestration
    address = os.environ.get(DASK_ADDRESS_ENV) or orchestration.dask_address
    if orchestration.task_runner == "local" and not os.environ.get(DASK_ADDRESS_ENV):
        return flow
    try:
        from prefect_dask import DaskTaskRunner  # noqa: PLC0415 (optional extra: pip install -e '.[dask]')
    except ImportError:
        raise PipelineError(
            "orchestration.task_runner: dask needs prefect-dask; pip install -e '.[dask]' "
            "or set task_runner: local in params.yaml"
        ) from None
    # No address: a temporary LocalCluster, one single-threaded worker per core (jieba holds the GIL).
    runner = DaskTaskRunner(address=address) if address else DaskTaskRunner(cluster_kwargs={"threads_per_worker": 1})
    return flow.with_options(task_runner=runner)


def on_dask() -> bool:
    """Whether the running flow submits its tasks to a Dask cluster."""
    context = FlowRunContext.get()
    try:
        from prefect_dask import DaskTaskRunner  # noqa: PLC0415 (optional extra: pip install -e '.[dask]')
    except ImportError:
        return False
    return context is not None and isinstance(context.task_runner, DaskTaskRunner)


def input_shards(pf: pq.ParquetFile, shard_rows: int) -> list[tuple[int, int]]:
    """The row ranges of a stage's input that its shard tasks read: `shard_rows` rows each, not
    whole batches, as what they compute per row does not depend on how rows are batched."""
    return tokenize_stream.row_ranges(pf.metadata.num_rows, shard_rows, 1)


def shard_batches(
    path: str, start: int, stop: int, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Rows [start, stop) of `path`, only `columns` (all when None), read by a cluster worker."""
    # A 1 MiB read buffer decodes page by page; unbuffered reads load whole column chunks.
    pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    return tokenize_stream.read_rows(pf, start, stop, batch_rows, columns)


def cleaned_rows(task: str, cfg, start: int, stop: int) -> list[dict]:
    """The clean stage's first pass on rows [start, stop) of `cfg.input`: the task's `clean_batches`
    (the rules, the rows long enough with their cleaned text, their text hashes), sent back to the
    flow process, which writes them."""
    impl = stage_module(task, "clean")
    return list(impl.clean_batches(shard_batches(cfg.input, start, stop, impl.batch_rows_of(cfg)), cfg))


def split_hashes(task: str, cfg, start: int, stop: int) -> list[dict]:
    """The split's first pass on rows [start, stop) of `cfg.input`: the task's `hash_batch` of each
    batch (reviews: hash and label, 16 bytes a row; lyrics: each line's source and hash), sent back
    to the flow process."""
    impl = stage_module(task, "split")
    return [
        impl.hash_batch(batch, cfg)
        for batch in shard_batches(cfg.input, start, stop, cfg.batch_rows, impl.PLAN_COLUMNS)
    ]


def token_counts(path: str, start: int, stop: int, batch_rows: int) -> dict[str, Counter]:
    """Token counts per split of rows [start, stop) of split file `path`."""
    return text_vocab.count_tokens(shard_batches(path, start, stop, batch_rows, text_vocab.COUNT_COLUMNS))


tokenize_shard_task = prefect.task(tokenize_stream.tokenize_shard, name="tokenize-shard", cache_policy=NO_CACHE)
cleaned_rows_task = prefect.task(cleaned_rows, name="clean-rows", cache_policy=NO_CACHE)
split_hashes_task = prefect.task(split_hashes, name="split-hashes", cache_policy=NO_CACHE)
token_counts_task = prefect.task(token_counts, name="vocab-counts", cache_policy=NO_CACHE)


def tokenize_stage(params, task: str = "lyrics") -> dict:
    """The tokenize stage (the function of the flows' cached `tokenize` task): in the flow process
    (worker processes per `tokenize.workers`), or on Dask one `tokenize-shard` task per row range,
    merged here in shard order into the same file. Cluster workers read `tokenize.input`
    themselves, so it must be reachable from them (a shared filesystem); they send their rows back,
    so only the flow process writes. The sharded output is byte-identical to a local run's, so the
    stage's cache record holds whichever runner wrote the file."""
    if not on_dask():
        return tokenize.run(params, task=task)
    cfg = task_section(params, task).tokenize
    keep_text = task_package(task).KEEP_TEXT
    futures = [
        tokenize_shard_task.submit(cfg, start, stop, keep_text)
        for start, stop in tokenize_stream.plan_shards(cfg, params.orchestration.shard_rows)
    ]
    return tokenize_stream.write_tables((future.result() for future in futures), cfg, keep_text)


def clean_stage(params, task: str = "lyrics") -> dict:
    """The clean stage (the function of the flows' cached `clean` task): in the flow process, or on
    Dask, for a task that streams its clean (reviews), the rules as one `clean-rows` task per row
    range; the cleaned rows and their hashes come back in shard order, and duplicates, conflicts,
    the output and the report are decided and written here as locally: the same files. Lyrics
    corpora are small and cleaned in memory, in the flow process. Workers read `clean.input`."""
    impl = stage_module(task, "clean")
    if not on_dask() or not hasattr(impl, "clean_batches"):
        return clean.run(params, task=task)
    cfg = task_section(params, task).clean
    futures = [
        cleaned_rows_task.submit(task, cfg, start, stop)
        for start, stop in input_shards(impl.open_input(cfg.input), params.orchestration.shard_rows)
    ]
    report = impl.clean_file(cfg, cleaned=(part for future in futures for part in future.result()))
    write_json(report, cfg.report)  # what tasks.clean.run writes after `clean_file`
    unit = task_package(task).UNIT
    log.info("clean (shards): %d %s in, %d out -> %s", report["lines_in"], unit, report["lines_out"], cfg.output)
    return report


def split_stage(params, task: str = "lyrics") -> dict:
    """The split stage (the function of the flows' cached `split` task): in the flow process, or on
    Dask the first pass's hashing as one `split-hashes` task per row range; the hashes come back
    in shard order, and the cut points, the second pass and the checks run here as locally, so the
    file is byte-identical to a local run's. Workers read `split.input` themselves (a shared
    filesystem); only the flow process writes."""
    if not on_dask():
        return split.run(params, task=task)
    cfg = task_section(params, task).split
    futures = [
        split_hashes_task.submit(task, cfg, start, stop)
        for start, stop in input_shards(pq.ParquetFile(cfg.input), params.orchestration.shard_rows)
    ]
    return split.run(params, task=task, hashed=(part for future in futures for part in future.result()))


def vocab_stage(params, task: str = "lyrics") -> dict:
    """The vocab stage (the function of the flows' cached `vocab` task): in the flow process, or on
    Dask one `vocab-counts` task per row range of `vocab.input`, counting tokens per split; their
    counts are added up here, and the vocabulary is built and written as locally (an identical
    file: it depends on the counts only). Workers read `vocab.input` themselves (a shared filesystem)."""
    if not on_dask():
        return vocab.run(params, task=task)
    cfg = task_section(params, task).vocab
    batch_rows = vocab.batch_rows(cfg)
    futures = [
        token_counts_task.submit(cfg.input, start, stop, batch_rows)
        for start, stop in input_shards(pq.ParquetFile(cfg.input), params.orchestration.shard_rows)
    ]
    return vocab.run(params, task=task, splits=text_vocab.sum_counts(future.result() for future in futures))
