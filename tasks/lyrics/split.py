"""Splitting lyrics: lines of one song share choruses, so lines are never split one by one: whole
groups go to one split. A group is a song when the corpus delimits songs (one file per song),
otherwise a block of `block_lines` contiguous lines. Groups are shuffled with a fixed seed: same
input, same split. Val/test lines that repeat a train line verbatim (repeated songs) are then dropped."""

import logging

import numpy as np
import pyarrow as pa

from tasks.common.errors import PipelineError
from tasks.lyrics.clean import CORPUS_KEY

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


def corpus_name(table: pa.Table, source_name: str = "") -> str:
    """The user's corpus a lyrics table was cleaned from (recorded by the clean stage), for errors;
    `source_name` (the file read) for a table without that record."""
    return ((table.schema.metadata or {}).get(CORPUS_KEY) or b"").decode() or source_name


def split_labels(sources: list[str], cfg, corpus: str) -> np.ndarray:
    """Each line's split from its source file (the groups of `group_ids`), or a one-line error
    naming the corpus and how much text it needs when train, val and test cannot each get a group."""
    groups = group_ids(sources, cfg.block_lines)
    n_groups, n_files = len(np.unique(groups)), len(set(sources))
    if n_files > 1:  # one group per song: lowering block_lines does not help, more songs do
        what, fix = f"{n_files} song files", "add songs, or put the lyrics in one file (then split into blocks)"
    else:
        what = f"{n_groups} block(s) of lyrics.split.block_lines={cfg.block_lines}"
        fix = "add lyrics or lower lyrics.split.block_lines"
    if n_groups < 3:
        raise PipelineError(
            f"{corpus}: corpus too small to split: {len(sources)} usable lines (after cleaning) make {what}; "
            f"train, val and test need one each, so at least 3 song files, or {2 * cfg.block_lines + 1} usable "
            f"lines in one file; {fix}"
        )
    labels = split_groups(groups, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    missing = [s for s in SPLITS if s not in set(labels)]
    if missing:
        raise PipelineError(
            f"{corpus}: corpus too small to split: {len(sources)} usable lines make {what}, which leave no lines "
            f"for {'/'.join(missing)}; {fix}"
        )
    return labels


def unseen_in_train(keys: list, labels) -> list[bool]:
    """Which lines to keep: every train line, and the val/test lines whose key (tokens, or text) is
    not a train line's. Lyric corpora repeat whole songs and stock lines; left in, they reward
    memorising the training set (an n-gram baseline excels at it) and steer early stopping towards
    overfit models."""
    seen = {k for k, s in zip(keys, labels) if s == "train"}
    return [s == "train" or k not in seen for k, s in zip(keys, labels)]


def check_eval_lines_left(labels: list[str], corpus: str) -> None:
    missing = [s for s in SPLITS if s not in set(labels)]
    if missing:
        raise PipelineError(
            f"{corpus}: no {'/'.join(missing)} lines left that are not repeats of train lines; "
            "add lyrics (other songs) or lower lyrics.split.block_lines"
        )


def split_by_group(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    corpus = corpus_name(table, source_name)
    labels = split_labels(table.column("source").to_pylist(), cfg, corpus)
    table = drop_eval_lines_seen_in_train(table.append_column("split", pa.array(labels.tolist(), pa.string())))
    check_eval_lines_left(table.column("split").to_pylist(), corpus)
    return table


def drop_eval_lines_seen_in_train(table: pa.Table) -> pa.Table:
    """Remove val/test lines whose tokens equal a train line (see `unseen_in_train`)."""
    keep = unseen_in_train([tuple(t) for t in table.column("tokens").to_pylist()], table.column("split").to_pylist())
    dropped = keep.count(False)
    if dropped:
        log.info("split: dropped %d val/test lines that also occur in train", dropped)
    return table.filter(pa.array(keep))


def split(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    """The split stage of this task: whole songs / blocks to train, val and test."""
    return split_by_group(table, cfg, source_name)
