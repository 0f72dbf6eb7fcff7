"""Splitting lyrics: lines of one song share choruses, so lines are never split one by one: whole
groups go to one split. A group is a song when the corpus delimits songs (one file per song),
otherwise a block of `block_lines` contiguous lines. Groups are shuffled with a fixed seed: same
input, same split. Val/test lines that repeat a train line verbatim (repeated songs) are then dropped."""

import logging

import numpy as np
import pyarrow as pa

from tasks.common.errors import PipelineError

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
        raise PipelineError(
            f"{source_name}: corpus too small to split, no lines for {missing}; add lyrics or lower split.block_lines"
        )
    table = drop_eval_lines_seen_in_train(table.append_column("split", pa.array(labels.tolist(), pa.string())))
    missing = [s for s in SPLITS if s not in set(table.column("split").to_pylist())]
    if missing:
        raise PipelineError(
            f"{source_name}: no {missing} lines left that are not repeats of train lines; "
            "add lyrics or lower split.block_lines"
        )
    return table


def drop_eval_lines_seen_in_train(table: pa.Table) -> pa.Table:
    """Remove val/test lines whose tokens equal a train line. Lyric corpora repeat whole songs and
    stock lines; left in, they reward memorising the training set (an n-gram baseline excels at
    it) and steer early stopping towards overfit models."""
    tokens = table.column("tokens").to_pylist()
    splits = table.column("split").to_pylist()
    seen = {tuple(t) for t, s in zip(tokens, splits) if s == "train"}
    keep = [s == "train" or tuple(t) not in seen for t, s in zip(tokens, splits)]
    dropped = keep.count(False)
    if dropped:
        log.info("split: dropped %d val/test lines that also occur in train", dropped)
    return table.filter(pa.array(keep))


def split(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    """The split stage of this task: whole songs / blocks to train, val and test."""
    return split_by_group(table, cfg, source_name)
