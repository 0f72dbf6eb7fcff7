"""Stage `tokenize`: clean.parquet → tokens.parquet with a `tokens: list<string>` column,
segmented by jieba (precise mode; `tokenize.backend: rjieba` for its Rust port) or into characters
(`tokenize.level: char`), streamed in batches (tasks/text/tokenize_stream.py).

Tasks whose later stages read the raw text too (reviews: evaluate lists mistakes as written, split
keeps identical texts together) keep their `text` column beside `tokens`.

    python -m tasks.tokenize [--task lyrics|reviews] [--params params.yaml] [--set lyrics.tokenize.level=char]
"""

import logging

from tasks.catalog import task_package
from tasks.common.cli import stage_main
from tasks.common.params import task_section
from tasks.text.tokenize_stream import tokenize_file

log = logging.getLogger(__name__)


def run(params, task: str = "lyrics") -> dict:
    cfg = task_section(params, task).tokenize
    counts = tokenize_file(cfg, keep_text=task_package(task).KEEP_TEXT)
    log.info(
        "tokenize (%s, %s): %d rows, %d tokens -> %s",
        cfg.level,
        cfg.backend,
        counts["rows"],
        counts["tokens"],
        cfg.output,
    )
    return counts


if __name__ == "__main__":
    stage_main(run, __doc__)
