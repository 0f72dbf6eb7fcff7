"""Splitting reviews: per review, stratified by label: each class is shuffled with the seed and cut
into test / val / train shares, identical texts always kept together; `assert_no_leakage` then
checks that no text reaches two splits."""

import numpy as np
import pyarrow as pa

from tasks.common.errors import PipelineError


def stratified_split(
    labels: np.ndarray,
    groups: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    source_name: str = "",
    names: dict | None = None,
) -> np.ndarray:
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
            raise PipelineError(
                f"{source_name}: class {name!r} has {n} distinct reviews; a stratified "
                f"train/val/test split needs at least 3 per class; add reviews of that class or drop it"
            )
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
            raise PipelineError(
                f"{source_name}: text {text[:30]!r} is in both {first[text]} and {split}; "
                "the split leaks, rerun clean with reviews.clean.drop_duplicates/drop_conflicts on"
            )


def split_reviews(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    texts = table.column("text").to_pylist()
    labels = table.column("label").to_numpy()
    names = dict(zip(table.column("label").to_pylist(), table.column("label_name").to_pylist()))
    if len(names) < 2:
        raise PipelineError(
            f"{source_name}: only class {next(iter(names.values()), None)!r} is left after cleaning; "
            "a classifier needs at least two classes, add reviews of another class"
        )
    _, groups = np.unique(np.array(texts, dtype=object).astype(str), return_inverse=True)
    splits = stratified_split(labels, groups, cfg.val_fraction, cfg.test_fraction, cfg.seed, source_name, names)
    assert_no_leakage(texts, splits.tolist(), source_name)
    return table.append_column("split", pa.array(splits.tolist(), pa.string()))


def split(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    """The split stage of this task: stratified by label, identical texts together."""
    return split_reviews(table, cfg, source_name)
