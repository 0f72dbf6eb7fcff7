"""Stage `split`: tokens.parquet → split.parquet with a `split` column (train / val / test),
deterministic for a seed and leak-free. Lyrics keep whole songs (or blocks of lines) together and
drop val/test lines that repeat a train line; reviews are stratified by label, identical texts
kept together.

    python -m tasks.split [--task lyrics|reviews] [--params params.yaml] [--set lyrics.split.seed=7]
"""

import logging

import numpy as np
import pyarrow.parquet as pq

from tasks.catalog import stage_module
from tasks.common.atomic import write_parquet
from tasks.common.cli import stage_main
from tasks.common.params import task_section

log = logging.getLogger(__name__)


def run(params, task: str = "lyrics") -> dict:
    cfg = task_section(params, task).split
    table = stage_module(task, "split").split(pq.read_table(cfg.input), cfg, cfg.input)
    write_parquet(table, cfg.output)
    counts = {
        s: int(c) for s, c in zip(*np.unique(table.column("split").to_numpy(zero_copy_only=False), return_counts=True))
    }
    log.info("split: %s rows -> %s", counts, cfg.output)
    return counts


if __name__ == "__main__":
    stage_main(run, __doc__)
