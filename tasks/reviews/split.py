"""Splitting reviews, stratified by label, by a stable hash of each text (no shuffle, no row order).

A review's key is its normalised text (`review_key`), hashed with the seed
(`tasks.split.stable_hashes`). Per class, the sorted distinct hashes are cut at ranks
round(n * test_fraction) and that plus round(n * val_fraction) (at least 1 each): hashes below the
first cut are test, below the second val, the rest train. So each class gets its exact share of
distinct texts and at least one in test and in val; identical texts share a hash, and so a split,
by construction; and the assignment does not depend on row order, batch size or workers.

Only the hash and label columns are held (16 bytes a row), never the texts: the first pass hashes
batch by batch and computes the cut points (`plan_split`), the second assigns each batch by
comparing its hashes with its class's cuts (`apply_split`). The flows on Dask hash in parallel:
each worker hashes its shard of rows (`hash_batch`), the (hash, label) columns are gathered in file
order to compute the cuts (`plan_from_parts`), and the second pass runs as locally.

A text that occurs with two labels (clean's drop_conflicts off) belongs to the class of its smallest
label: counted there and cut with that class's cuts, so all its copies land in one split.
`assert_no_leakage` then checks on the hash column that no text reached two splits."""

import unicodedata

import numpy as np
import pyarrow as pa

from tasks.common.errors import PipelineError
from tasks.split import SPLITS, split_array, split_codes, stable_hashes

PLAN_COLUMNS = ["text", "label", "label_name"]
TRAIN, VAL, TEST = range(len(SPLITS))


def review_key(text: str | None) -> str:
    """The text two reviews are identical by: NFKC, case-folded, whitespace collapsed, so copies that
    differ only in width, case or spacing count as one text (and never straddle splits)."""
    return " ".join(unicodedata.normalize("NFKC", text or "").casefold().split())


def text_hashes(texts, seed: int) -> np.ndarray:
    """The split hash of each review text (a list or an Arrow column). (n,) uint64."""
    if not isinstance(texts, list):
        texts = texts.to_pylist()
    return stable_hashes(map(review_key, texts), seed)


def owner_classes(hashes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each distinct hash with the class that owns it (its smallest label); returns (distinct hashes,
    owners) and, for the few hashes seen with more than one label, (conflict hashes, owners): all
    sorted by hash."""
    order = np.lexsort((labels, hashes))  # by hash, then label
    h, lab = hashes[order], labels[order]
    first = np.r_[True, h[1:] != h[:-1]]
    last = np.r_[h[1:] != h[:-1], True]
    unique, owner = h[first], lab[first]
    conflict = lab[last] != owner  # the run's largest label differs from its smallest
    return unique, owner, unique[conflict], owner[conflict]


def class_cuts(
    unique: np.ndarray,
    owner: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    source_name: str = "",
    names: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class (sorted labels), the hash at which test ends and the one at which val ends: the
    distinct hashes it owns are cut at ranks n_test and n_test + n_val. (classes, test cut, val cut)."""
    classes = np.unique(owner)
    test_cut = np.empty(len(classes), np.uint64)
    val_cut = np.empty(len(classes), np.uint64)
    for i, label in enumerate(classes):
        owned = unique[owner == label]  # sorted, as `unique` is
        n = len(owned)
        n_test, n_val = max(1, round(n * test_fraction)), max(1, round(n * val_fraction))
        if n - n_test - n_val < 1:
            raise_too_few(label, n, source_name, names)
        test_cut[i], val_cut[i] = owned[n_test], owned[n_test + n_val]
    return classes, test_cut, val_cut


def raise_too_few(label, n: int, source_name: str, names: dict | None) -> None:
    name = (names or {}).get(int(label), int(label))
    raise PipelineError(
        f"{source_name}: class {name!r} has {n} distinct reviews; a stratified "
        f"train/val/test split needs at least 3 per class; add reviews of that class or drop it"
    )


def assign_splits(hashes: np.ndarray, labels: np.ndarray, plan: dict) -> np.ndarray:
    """Each row's split code (0 train, 1 val, 2 test) from its hash and its class's cuts: a function
    of the row alone (and the cuts), so any batching of the rows gives the same answer."""
    owners = labels.copy()
    if len(plan["conflict_hashes"]):  # a text seen with several labels: cut with its owner's cuts
        at = np.minimum(np.searchsorted(plan["conflict_hashes"], hashes), len(plan["conflict_hashes"]) - 1)
        hit = plan["conflict_hashes"][at] == hashes
        owners[hit] = plan["conflict_owners"][at[hit]]
    c = np.searchsorted(plan["classes"], owners)
    codes = np.full(len(hashes), TRAIN, np.uint8)
    codes[hashes < plan["val_cut"][c]] = VAL
    codes[hashes < plan["test_cut"][c]] = TEST
    return codes


def class_names(labels: np.ndarray, label_names, names: dict) -> None:
    """Add the name of each label first seen in this batch to `names` (for errors and reports)."""
    values, first = np.unique(labels, return_index=True)
    for value, i in zip(values.tolist(), first.tolist()):
        if value not in names:
            names[value] = label_names[i].as_py()


def hash_batch(batch, cfg) -> dict:
    """The first pass on one batch of `PLAN_COLUMNS`: its text hashes, labels and label names. The
    costly part of the pass (hashing every text), and a function of the batch alone, so the flows on
    Dask run it per shard and gather the results in file order for `plan_from_parts`."""
    labels = batch.column("label").to_numpy(zero_copy_only=False).astype(np.int64)
    names = {}
    class_names(labels, batch.column("label_name"), names)
    return {"hashes": text_hashes(batch.column("text"), cfg.seed), "labels": labels, "names": names}


def plan_from_parts(parts, cfg, source_name: str = "", schema: pa.Schema | None = None) -> dict:
    """The cut points per class from every batch's `hash_batch`, in file order. The plan holds the
    hash and label columns (for the second pass and the leakage check) and the cuts; raises the
    one-line errors (one class left, a class with fewer than 3 distinct texts)."""
    hashes, labels, names = [], [], {}
    for part in parts:
        hashes.append(part["hashes"])
        labels.append(part["labels"])
        for value, name in part["names"].items():
            names.setdefault(value, name)
    if len(names) < 2:
        raise PipelineError(
            f"{source_name}: only class {next(iter(names.values()), None)!r} is left after cleaning; "
            "a classifier needs at least two classes, add reviews of another class"
        )
    hashes, labels = np.concatenate(hashes), np.concatenate(labels)
    unique, owner, conflict_hashes, conflict_owners = owner_classes(hashes, labels)
    for label in sorted(set(names) - set(owner.tolist())):  # every copy of each of its texts has a smaller label
        raise_too_few(label, 0, source_name, names)
    classes, test_cut, val_cut = class_cuts(unique, owner, cfg.val_fraction, cfg.test_fraction, source_name, names)
    return {
        "hashes": hashes,
        "labels": labels,
        "names": names,
        "classes": classes,
        "test_cut": test_cut,
        "val_cut": val_cut,
        "conflict_hashes": conflict_hashes,
        "conflict_owners": conflict_owners,
    }


def plan_split(batches, cfg, source_name: str = "", schema: pa.Schema | None = None) -> dict:
    """First pass: hash each batch's texts (`hash_batch`), then the cut points per class
    (`plan_from_parts`)."""
    return plan_from_parts((hash_batch(batch, cfg) for batch in batches), cfg, source_name, schema)


def apply_split(batch, plan: dict, start: int):
    """Second pass: `batch` (rows start.. of the file) with its `split` column."""
    rows = slice(start, start + batch.num_rows)
    codes = assign_splits(plan["hashes"][rows], plan["labels"][rows], plan)
    return batch.append_column("split", split_array(codes))


def assert_no_leakage(hashes: np.ndarray, codes: np.ndarray, source_name: str = "") -> None:
    """Fail when one text (one hash) sits in two splits (the test score would reward memorising it)."""
    order = np.argsort(hashes, kind="stable")
    h, c = hashes[order], codes[order]
    leaks = np.flatnonzero((h[1:] == h[:-1]) & (c[1:] != c[:-1]))
    if len(leaks):
        a, b = order[leaks[0]], order[leaks[0] + 1]
        raise PipelineError(
            f"{source_name}: rows {min(a, b)} and {max(a, b)} hold the same text but are in "
            f"{SPLITS[c[leaks[0]]]} and {SPLITS[c[leaks[0] + 1]]}; the split leaks, rerun clean with "
            "reviews.clean.drop_duplicates/drop_conflicts on"
        )


def class_shares(labels: np.ndarray, codes: np.ndarray, names: dict) -> dict[str, dict[str, float]]:
    """Per split, the share of its rows in each class (by label name): the stratification as written."""
    shares = {}
    for code, split_name in enumerate(SPLITS):
        in_split = labels[codes == code]
        values, counts = np.unique(in_split, return_counts=True)
        shares[split_name] = {
            str(names.get(v, v)): round(int(n) / len(in_split), 4) for v, n in zip(values.tolist(), counts)
        }
    return shares


def check_split(plan: dict, codes: np.ndarray, source_name: str = "") -> dict:
    """Check the written split (`codes`: every row's, in file order): no text in two splits. Returns
    the class shares per split."""
    assert_no_leakage(plan["hashes"], codes, source_name)
    return {"class_shares": class_shares(plan["labels"], codes, plan["names"])}


def split_reviews(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    """`table` with its `split` column: the stage's two passes over one in-memory table."""
    plan = plan_split(table.select(PLAN_COLUMNS).to_batches(), cfg, source_name, table.schema)
    out = apply_split(table, plan, 0)
    check_split(plan, split_codes(out.column("split")), source_name)
    return out


def split(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    """The split stage of this task: stratified by label, identical texts together."""
    return split_reviews(table, cfg, source_name)
