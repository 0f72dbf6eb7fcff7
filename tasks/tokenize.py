"""Stage `tokenize`: clean.parquet → tokens.parquet with a `tokens: list<string>` column,
segmented by jieba (precise mode) or into characters (`tokenize.level: char`).

Reviews keep their `text` column beside `tokens` (evaluate lists mistakes as written; split checks
that no identical text lands in two splits).

    python -m tasks.tokenize [--task lyrics|reviews] [--params params.yaml] [--set lyrics.tokenize.level=char]
"""

import logging
import re
from functools import lru_cache
from pathlib import Path

import jieba
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.atomic import write_parquet
from tasks.cli import stage_main
from tasks.errors import PipelineError
from tasks.params import task_section

log = logging.getLogger(__name__)
jieba.setLogLevel(logging.WARNING)  # its "Building prefix dict" chatter is not our progress
# Character level keeps Latin words and numbers whole: "baby" is one token, not four.
CHAR_TOKEN = re.compile(r"[A-Za-z0-9']+|\S")


@lru_cache(maxsize=4)
def jieba_tokenizer(user_dict: str | None = None) -> jieba.Tokenizer:
    """A private jieba Tokenizer (not the global one), so a user dictionary never leaks across tasks."""
    tokenizer = jieba.Tokenizer()
    if user_dict:
        if not Path(user_dict).is_file():
            raise PipelineError(f"{user_dict}: jieba user dictionary not found; fix tokenize.user_dict in params.yaml")
        tokenizer.load_userdict(user_dict)
    return tokenizer


def segment(text: str, level: str = "word", hmm: bool = True, user_dict: str | None = None) -> list[str]:
    """One text → tokens, whitespace dropped. `level="word"` uses jieba's precise mode."""
    if level == "char":
        return CHAR_TOKEN.findall(text)
    return [t for t in jieba_tokenizer(user_dict).lcut(text, HMM=hmm) if not t.isspace()]


def tokenize_table(table: pa.Table, cfg, keep_text: bool = False) -> pa.Table:
    """Replace the `text` column by `tokens` (list<string>), or add it beside `text` with `keep_text`;
    every other column is carried through."""
    tokens = [segment(t, cfg.level, cfg.hmm, cfg.user_dict) for t in table.column("text").to_pylist()]
    if not keep_text:
        table = table.drop_columns(["text"])
    return table.append_column("tokens", pa.array(tokens, pa.list_(pa.string())))


def run(params, task: str = "lyrics") -> dict:
    cfg = task_section(params, task).tokenize
    table = tokenize_table(pq.read_table(cfg.input), cfg, keep_text=task == "reviews")
    write_parquet(table, cfg.output)
    n_tokens = sum(len(t) for t in table.column("tokens").to_pylist())
    log.info("tokenize (%s): %d rows, %d tokens -> %s", cfg.level, table.num_rows, n_tokens, cfg.output)
    return {"rows": table.num_rows, "tokens": n_tokens}


if __name__ == "__main__":
    stage_main(run, __doc__)
