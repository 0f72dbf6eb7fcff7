"""Stage `tokenize`: clean.parquet → tokens.parquet with a `tokens: list<string>` column,
segmented by jieba (precise mode; `tokenize.backend: rjieba` for its Rust port) or into characters
(`tokenize.level: char`).

Reviews keep their `text` column beside `tokens` (evaluate lists mistakes as written; split checks
that no identical text lands in two splits).

The input is read and written in batches of `tokenize.batch_rows` rows, segmented in
`tokenize.workers` processes, so memory stays flat however large the corpus is; the output is the
same table whatever the number of workers. The Prefect flows on Dask run `tokenize_shard` per row
range of `plan_shards` and merge with `write_tables`.

    python -m tasks.tokenize [--task lyrics|reviews] [--params params.yaml] [--set lyrics.tokenize.level=char]
"""

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache, partial
from pathlib import Path

import jieba
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.atomic import atomic_path
from tasks.cli import stage_main
from tasks.errors import PipelineError
from tasks.parallel import ordered_map, start_method, usable_cores
from tasks.params import Tokenize, task_section

log = logging.getLogger(__name__)
jieba.setLogLevel(logging.WARNING)  # its "Building prefix dict" chatter is not our progress
# Character level keeps Latin words and numbers whole: "baby" is one token, not four.
CHAR_TOKEN = re.compile(r"[A-Za-z0-9']+|\S")
TOKENS = pa.field("tokens", pa.list_(pa.string()))


def _user_dict_lines(user_dict: str) -> list[str]:
    path = Path(user_dict)
    if not path.is_file():
        raise PipelineError(f"{user_dict}: jieba user dictionary not found; fix tokenize.user_dict in params.yaml")
    try:
        return path.read_text(encoding="utf-8").lstrip("\ufeff").splitlines()
    except UnicodeDecodeError:
        raise PipelineError(f"{user_dict}: jieba user dictionary is not UTF-8; re-save it as UTF-8 "
                            "(or fix tokenize.user_dict in params.yaml)") from None


@lru_cache(maxsize=4)
def jieba_tokenizer(user_dict: str | None = None) -> jieba.Tokenizer:
    """A private jieba Tokenizer (not the global one), so a user dictionary never leaks across tasks."""
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()  # now, not at the first cut: a worker's initializer pays it, not its first batch
    if user_dict:
        _user_dict_lines(user_dict)  # missing or not UTF-8: our one-line error, not jieba's traceback
        tokenizer.load_userdict(user_dict)
    return tokenizer


@lru_cache(maxsize=4)
def rjieba_tokenizer(user_dict: str | None = None):
    """jieba-rs (same dictionary as jieba); a user dictionary is added word by word, parsed as
    jieba parses it (`word [freq] [tag]`; no freq: the frequency that keeps the word whole)."""
    try:
        import rjieba  # optional: pip install -e '.[fast]'
    except ImportError:
        raise PipelineError("tokenize.backend is rjieba but the rjieba package is not installed; "
                            "pip install -e '.[fast]' or set tokenize.backend: jieba in params.yaml") from None
    tokenizer = rjieba.Jieba()
    for line in _user_dict_lines(user_dict) if user_dict else []:
        if line.strip():
            word, freq, tag = jieba.re_userdict.match(line.strip()).groups()
            tokenizer.add_word(word, int(freq) if freq else None, tag.strip() if tag else None)
    return tokenizer


def segmenter(level: str = "word", hmm: bool = True, user_dict: str | None = None,
              backend: str = "jieba") -> Callable[[str], list[str]]:
    """The function that cuts one text into tokens (whitespace tokens included)."""
    if level == "char":
        return CHAR_TOKEN.findall
    if backend == "rjieba":
        return partial(rjieba_tokenizer(user_dict).cut, hmm=hmm)
    return partial(jieba_tokenizer(user_dict).lcut, HMM=hmm)


def segment(text: str, level: str = "word", hmm: bool = True, user_dict: str | None = None,
            backend: str = "jieba") -> list[str]:
    """One text → tokens, whitespace dropped. `level="word"` uses jieba's precise mode."""
    return [t for t in segmenter(level, hmm, user_dict, backend)(text) if not t.isspace()]


def tokens_array(texts: list[str], cfg: Tokenize) -> pa.Array:
    cut = segmenter(cfg.level, cfg.hmm, cfg.user_dict, cfg.backend)
    return pa.array([[t for t in cut(text) if not t.isspace()] for text in texts], TOKENS.type)


def output_schema(schema: pa.Schema, keep_text: bool) -> pa.Schema:
    """The input's columns, `text` dropped unless `keep_text`, then `tokens`."""
    if not keep_text:
        schema = schema.remove(schema.get_field_index("text"))
    return schema.append(TOKENS)


def tokenize_batch(batch: pa.RecordBatch, cfg: Tokenize, keep_text: bool = False) -> pa.RecordBatch:
    """Replace the `text` column by `tokens` (list<string>), or add it beside `text` with `keep_text`;
    every other column is carried through."""
    tokens = tokens_array(batch.column("text").to_pylist(), cfg)
    if not keep_text:
        batch = batch.drop_columns(["text"])
    return batch.append_column(TOKENS, tokens)


def tokenize_table(table: pa.Table, cfg: Tokenize, keep_text: bool = False) -> pa.Table:
    """`tokenize_batch` on a whole in-memory table."""
    batches = [tokenize_batch(b, cfg, keep_text) for b in table.to_batches()]
    return pa.Table.from_batches(batches, output_schema(table.schema, keep_text))


def _warm_up(cfg: Tokenize) -> None:
    """Worker initializer: load the dictionary once per process, not once per batch. An error here
    would only break the pool; the first batch raises it again, and that reaches the caller."""
    try:
        segmenter(cfg.level, cfg.hmm, cfg.user_dict, cfg.backend)
    except PipelineError:
        pass


def open_input(path: str) -> pq.ParquetFile:
    if not Path(path).is_file():
        raise PipelineError(f"{path}: tokenize input not found; run the clean stage first or fix tokenize.input in params.yaml")
    # Unbuffered or pre-buffered reads load a whole column chunk (the whole column, when the file has
    # one row group); a 1 MiB read buffer decodes page by page, so memory does not grow with the file.
    pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    if "text" not in pf.schema_arrow.names:
        raise PipelineError(f"{path}: no `text` column to tokenize; rerun the clean stage or fix tokenize.input in params.yaml")
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
            _user_dict_lines(cfg.user_dict)
    method = start_method()
    if method == "fork":  # load the dictionary once here; every forked worker inherits it
        segmenter(cfg.level, cfg.hmm, cfg.user_dict, cfg.backend)
    log.info("tokenize: %d worker processes (%s), %d rows per batch", workers, method, cfg.batch_rows)
    return ordered_map(partial(tokenize_batch, cfg=cfg, keep_text=keep_text), batches, workers,
                       initializer=_warm_up, initargs=(cfg,))


def write_batches(batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: str) -> dict:
    """Stream batches into Parquet (zstd, one row group per batch) via a temp file renamed at the end;
    returns the row and token counts, counted on the way."""
    rows = n_tokens = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
            n_tokens += pc.sum(pc.list_value_length(batch.column("tokens"))).as_py() or 0
    return {"rows": rows, "tokens": n_tokens}


def tokenize_file(cfg: Tokenize, keep_text: bool = False) -> dict:
    """`cfg.input` → `cfg.output`, streamed; returns the row and token counts."""
    pf = open_input(cfg.input)
    return write_batches(tokenized_batches(pf, cfg, keep_text), output_schema(pf.schema_arrow, keep_text), cfg.output)


def run(params, task: str = "lyrics") -> dict:
    cfg = task_section(params, task).tokenize
    counts = tokenize_file(cfg, keep_text=task == "reviews")
    log.info("tokenize (%s, %s): %d rows, %d tokens -> %s", cfg.level, cfg.backend, counts["rows"], counts["tokens"], cfg.output)
    return counts


# --- shards, for a cluster (the Prefect flows on Dask) ------------------------------------------


def plan_shards(cfg: Tokenize, shard_rows: int) -> list[tuple[int, int]]:
    """Row ranges [start, stop) covering the input in order. Shards are whole batches, so the merged
    file has the same row groups as a local run."""
    rows = open_input(cfg.input).metadata.num_rows
    step = max(1, -(-shard_rows // cfg.batch_rows)) * cfg.batch_rows
    return [(start, min(start + step, rows)) for start in range(0, rows, step)]


def read_rows(pf: pq.ParquetFile, start: int, stop: int, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Rows [start, stop) in batches, reading only the row groups that hold them."""
    groups, first, offset = [], 0, 0
    for i in range(pf.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if offset < stop and offset + n > start:
            first = first if groups else offset
            groups.append(i)
        offset += n
    position = first
    for batch in pf.iter_batches(batch_size=batch_rows, row_groups=groups):
        lo, hi = max(start - position, 0), min(stop - position, batch.num_rows)
        if lo < hi:
            yield batch.slice(lo, hi - lo)
        position += batch.num_rows
        if position >= stop:
            return


def tokenize_shard(cfg: Tokenize, start: int, stop: int, keep_text: bool = False) -> pa.Table:
    """One shard's output rows, segmented in this process. It returns a table rather than writing a
    file, so a cluster worker needs to read `cfg.input` but never to write beside it."""
    pf = open_input(cfg.input)
    batches = [tokenize_batch(b, cfg, keep_text) for b in read_rows(pf, start, stop, cfg.batch_rows)]
    return pa.Table.from_batches(batches, output_schema(pf.schema_arrow, keep_text))


def write_tables(tables: Iterable[pa.Table], cfg: Tokenize, keep_text: bool = False) -> dict:
    """Merge shard outputs, in the order given, into `cfg.output` (atomically)."""
    schema = output_schema(open_input(cfg.input).schema_arrow, keep_text)
    counts = write_batches((b for t in tables for b in t.to_batches(max_chunksize=cfg.batch_rows)), schema, cfg.output)
    log.info("tokenize (%s, %s, shards): %d rows, %d tokens -> %s", cfg.level, cfg.backend, counts["rows"], counts["tokens"], cfg.output)
    return counts


if __name__ == "__main__":
    stage_main(run, __doc__)
