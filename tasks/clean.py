"""Stage `clean`: a task's raw input → clean.parquet, one row per kept line / review, plus a report
of rows in/out per rule. Lyrics: raw lyric files (.txt / .lrc); reviews: the ingested table, with
exact duplicates and conflicting labels dropped too, streamed in record batches so memory does
not grow with the corpus (tasks/reviews/clean.py).

    python -m tasks.clean [--task lyrics|reviews] [--params params.yaml] [--set lyrics.clean.min_chars=3]
"""

import logging

from tasks.catalog import stage_module, task_package
from tasks.common.atomic import write_json, write_parquet
from tasks.common.cli import stage_main
from tasks.common.params import task_section

log = logging.getLogger(__name__)


def run(params, task: str = "lyrics") -> dict:
    tp = task_section(params, task)
    module = stage_module(task, "clean")
    if hasattr(module, "clean_file"):  # a task whose corpus can be large streams it and writes the output itself
        report = module.clean_file(tp.clean)
    else:  # lyrics corpora are small: cleaned in memory
        table, report = module.clean(tp)
        write_parquet(table, tp.clean.output)
    write_json(report, tp.clean.report)
    log.info(
        "clean: %d %s in, %d out -> %s",
        report["lines_in"],
        task_package(task).UNIT,
        report["lines_out"],
        tp.clean.output,
    )
    return report


if __name__ == "__main__":
    stage_main(run, __doc__)
