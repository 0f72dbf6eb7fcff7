"""Stage `split`: tokens.parquet → split.parquet with a `split` column (train / val / test).

Lines of one song share choruses, so lines are never split one by one: whole groups go to one
split. A group is a song when the corpus delimits songs (one file per song), otherwise a block of
`block_lines` contiguous lines. Groups are shuffled with a fixed seed: same input, same split.
Val/test lines that repeat a train line verbatim (repeated songs) are then dropped.

Reviews are split per review, stratified by label: each class is shuffled with the seed and cut
into test / val / train shares, identical texts always kept together; `assert_no_leakage` then
checks that no text reaches two splits.

    python -m tasks.split [--task lyrics|reviews] [--params params.yaml] [--set lyrics.split.seed=7]
"""

import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.atomic import write_parquet
from tasks.cli import stage_main
from tasks.errors import PipelineError
from tasks.params import task_section

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
    table = drop_eval_lines_seen_in_train(table.append_column("split", pa.array(labels.tolist(), pa.string())))
    missing = [s for s in SPLITS if s not in set(table.column("split").to_pylist())]
    if missing:
        raise PipelineError(f"{source_name}: no {missing} lines left that are not repeats of train lines; "
                            "add lyrics or lower split.block_lines")
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


def stratified_split(labels: np.ndarray, groups: np.ndarray, val_fraction: float, test_fraction: float,
                     seed: int, source_name: str = "", names: dict | None = None) -> np.ndarray:
    """Assign rows to splits class by class (each class gets its share of test and val, at least one
    row each); rows of one group (identical texts) share a split. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    assigned = np.empty(len(labels), dtype=object)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        unique_groups = np.unique(groups[rows])  # sorted, so the shuffle depends on the seed only
        n = len(unique_groups)
        n_test, n_val = max(1, round(n * test_fraction)), max(1, round(n * val_fraction))
        if n - n_test - n_val < 1:
            name = (names or {}).get(label, label)
            raise PipelineError(f"{source_name}: class {name!r} has {n} distinct reviews; a stratified "
                                f"train/val/test split needs at least 3 per class; add reviews of that class or drop it")
        order = unique_groups[rng.permutation(n)]
        split_of = {g: "test" for g in order[:n_test]}
        split_of.update({g: "val" for g in order[n_test : n_test + n_val]})
        split_of.update({g: "train" for g in order[n_test + n_val :]})
        for r in rows:
            assigned[r] = split_of[groups[r]]
    return assigned.astype(str)


def assert_no_leakage(texts: list[str], splits: list[str], source_name: str = "") -> None:
    """Fail when an identical text sits in two splits (the test score would reward memorising it)."""
    first: dict[str, str] = {}
    for text, split in zip(texts, splits):
        if first.setdefault(text, split) != split:
            raise PipelineError(f"{source_name}: text {text[:30]!r} is in both {first[text]} and {split}; "
                                "the split leaks, rerun clean with reviews.clean.drop_duplicates/drop_conflicts on")


def split_reviews(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    texts = table.column("text").to_pylist()
    labels = table.column("label").to_numpy()
    names = dict(zip(table.column("label").to_pylist(), table.column("label_name").to_pylist()))
    if len(names) < 2:
        raise PipelineError(f"{source_name}: only class {next(iter(names.values()), None)!r} is left after cleaning; "
                            "a classifier needs at least two classes, add reviews of another class")
    _, groups = np.unique(np.array(texts, dtype=object).astype(str), return_inverse=True)
    splits = stratified_split(labels, groups, cfg.val_fraction, cfg.test_fraction, cfg.seed, source_name, names)
    assert_no_leakage(texts, splits.tolist(), source_name)
    return table.append_column("split", pa.array(splits.tolist(), pa.string()))


def run(params, task: str = "lyrics") -> dict:
    cfg = task_section(params, task).split
    table = pq.read_table(cfg.input)
    table = split_by_group(table, cfg, cfg.input) if task == "lyrics" else split_reviews(table, cfg, cfg.input)
    write_parquet(table, cfg.output)
    counts = {s: int(c) for s, c in zip(*np.unique(table.column("split").to_numpy(zero_copy_only=False), return_counts=True))}
    log.info("split: %s rows -> %s", counts, cfg.output)
    return counts


if __name__ == "__main__":
    stage_main(run, __doc__)
