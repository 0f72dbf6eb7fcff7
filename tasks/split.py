"""Stage `split`: tokens.parquet → split.parquet with a `split` column (train / val / test).

Lines of one song share choruses, so lines are never split one by one: whole groups go to one
split. A group is a song when the corpus delimits songs (one file per song), otherwise a block of
`block_lines` contiguous lines. Groups are shuffled with a fixed seed: same input, same split.

    python -m tasks.split [--params params.yaml] [--set lyrics.split.seed=7]
"""

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.atomic import write_parquet
from tasks.cli import stage_main
from tasks.errors import PipelineError

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def group_ids(sources: list[str], block_lines: int) -> np.ndarray:
    """One group per source file when there are several (songs), else contiguous line blocks."""
    if len(set(sources)) > 1:
        _, groups = np.unique(np.array(sources), return_inverse=True)
        return groups
    return np.arange(len(sources)) // block_lines


def split_groups(groups: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Assign whole groups to splits, filling test then val up to their share of lines (deterministic)."""
    unique, sizes = np.unique(groups, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    total, assigned = len(groups), {}
    targets = [("test", test_fraction * total), ("val", val_fraction * total)]
    filled, target_i = 0.0, 0
    for idx in order:
        if target_i < len(targets):
            name, goal = targets[target_i]
            assigned[unique[idx]] = name
            filled += sizes[idx]
            if filled >= goal:
                target_i, filled = target_i + 1, 0.0
        else:
            assigned[unique[idx]] = "train"
    return np.array([assigned[g] for g in groups])


def split_by_group(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    groups = group_ids(table.column("source").to_pylist(), cfg.block_lines)
    if len(np.unique(groups)) < 3:
        raise PipelineError(
            f"{source_name}: corpus too small to split ({table.num_rows} lines in {len(np.unique(groups))} "
            f"groups; need at least 3); add lyrics or lower split.block_lines"
        )
    labels = split_groups(groups, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    missing = [s for s in SPLITS if s not in set(labels)]
    if missing:
        raise PipelineError(f"{source_name}: corpus too small to split, no lines for {missing}; add lyrics or lower split.block_lines")
    return table.append_column("split", pa.array(labels.tolist(), pa.string()))


def run(params) -> dict:
    cfg = params.lyrics.split
    table = split_by_group(pq.read_table(cfg.input), cfg, cfg.input)
    write_parquet(table, cfg.output)
    counts = {s: int(c) for s, c in zip(*np.unique(table.column("split").to_numpy(zero_copy_only=False), return_counts=True))}
    log.info("split: %s lines -> %s", counts, cfg.output)
    return counts


if __name__ == "__main__":
    stage_main(run, __doc__)
