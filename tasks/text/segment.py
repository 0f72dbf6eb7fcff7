"""Segmentation: jieba (precise mode), its Rust port rjieba, or characters, and the Arrow batches
of the tokenize stage (a `tokens: list<string>` column replacing or beside `text`)."""

import logging
import re
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path

import jieba
import pyarrow as pa

from tasks.common.errors import PipelineError
from tasks.common.sections import Tokenize

jieba.setLogLevel(logging.WARNING)  # its "Building prefix dict" chatter is not our progress
# Character level keeps Latin words and numbers whole: "baby" is one token, not four.
CHAR_TOKEN = re.compile(r"[A-Za-z0-9']+|\S")


TOKENS = pa.field("tokens", pa.list_(pa.string()))


def user_dict_lines(user_dict: str) -> list[str]:
    path = Path(user_dict)
    if not path.is_file():
        raise PipelineError(f"{user_dict}: jieba user dictionary not found; fix tokenize.user_dict in params.yaml")
    try:
        return path.read_text(encoding="utf-8").lstrip("\ufeff").splitlines()
    except UnicodeDecodeError:
        raise PipelineError(
            f"{user_dict}: jieba user dictionary is not UTF-8; re-save it as UTF-8 "
            "(or fix tokenize.user_dict in params.yaml)"
        ) from None


@lru_cache(maxsize=4)
def jieba_tokenizer(user_dict: str | None = None) -> jieba.Tokenizer:
    """A private jieba Tokenizer (not the global one), so a user dictionary never leaks across tasks."""
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()  # now, not at the first cut: a worker's initializer pays it, not its first batch
    if user_dict:
        user_dict_lines(user_dict)  # missing or not UTF-8: our one-line error, not jieba's traceback
        tokenizer.load_userdict(user_dict)
    return tokenizer


@lru_cache(maxsize=4)
def rjieba_tokenizer(user_dict: str | None = None):
    """jieba-rs (same dictionary as jieba); a user dictionary is added word by word, parsed as
    jieba parses it (`word [freq] [tag]`; no freq: the frequency that keeps the word whole)."""
    try:
        import rjieba  # noqa: PLC0415 (optional extra: pip install -e '.[fast]')
    except ImportError:
        raise PipelineError(
            "tokenize.backend is rjieba but the rjieba package is not installed; "
            "pip install -e '.[fast]' or set tokenize.backend: jieba in params.yaml"
        ) from None
    tokenizer = rjieba.Jieba()
    for line in user_dict_lines(user_dict) if user_dict else []:
        if line.strip():
            word, freq, tag = jieba.re_userdict.match(line.strip()).groups()
            tokenizer.add_word(word, int(freq) if freq else None, tag.strip() if tag else None)
    return tokenizer


def segmenter(
    level: str = "word", hmm: bool = True, user_dict: str | None = None, backend: str = "jieba"
) -> Callable[[str], list[str]]:
    """The function that cuts one text into tokens (whitespace tokens included)."""
    if level == "char":
        return CHAR_TOKEN.findall
    if backend == "rjieba":
        return partial(rjieba_tokenizer(user_dict).cut, hmm=hmm)
    return partial(jieba_tokenizer(user_dict).lcut, HMM=hmm)


def segment(
    text: str, level: str = "word", hmm: bool = True, user_dict: str | None = None, backend: str = "jieba"
) -> list[str]:
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
