"""Stage `tokenize`: clean.parquet → tokens.parquet with a `tokens: list<string>` column,
segmented by jieba (precise mode; `tokenize.backend: rjieba` for its Rust port) or into characters
(`tokenize.level: char`), streamed in batches (tasks/text/tokenize_stream.py).

Tasks whose later stages read the raw text too (reviews: evaluate lists mistakes as written, split
keeps identical texts together) keep their `text` column beside `tokens`.

    python -m tasks.tokenize [--task lyrics|reviews] [--params params.yaml] [--set lyrics.tokenize.level=char]
"""

from tasks.catalog import task_package
from tasks.common.cli import stage_main
from tasks.common.params import task_section
from tasks.text.tokenize_stream import log_counts, tokenize_file


def run(params, task: str = "lyrics") -> dict:
    cfg = task_section(params, task).tokenize
    counts = tokenize_file(cfg, keep_text=task_package(task).KEEP_TEXT)
    log_counts(cfg, counts)
    return counts


if __name__ == "__main__":
    stage_main(run, __doc__)
