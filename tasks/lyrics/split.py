"""Splitting lyrics: lines of one song share choruses, so lines are never split one by one: whole
groups go to one split. A group is a song when the corpus delimits songs (one file per song),
otherwise a block of `block_lines` contiguous lines. Groups are ordered by a stable hash of their
key (the song's file, or the file and block number) keyed with the seed (`tasks.split.stable_hashes`),
then dealt to test and val up to their share of lines, the rest to train: same input, same split,
whatever the order of the songs in the file. Val/test lines that repeat a train line verbatim
(repeated songs, stock lines) are then dropped.

Both need every line at once (group sizes, the set of train lines), which is fine: a lyrics corpus
is thousands of lines, so the plan holds each line's source and a 64-bit hash of its tokens."""

import logging

import numpy as np
import pyarrow as pa

from tasks.common.errors import PipelineError
from tasks.lyrics.clean import CORPUS_KEY
from tasks.split import SPLITS, split_array, split_codes, stable_hashes

log = logging.getLogger(__name__)
PLAN_COLUMNS = ["source", "tokens"]


def group_keys(sources: list[str], block_lines: int) -> list[str]:
    """Each line's group: its source file when there are several (songs), else its file and block
    of `block_lines` contiguous lines."""
    if len(set(sources)) > 1:
        return list(sources)
    return [f"{source}#{i // block_lines}" for i, source in enumerate(sources)]


def split_groups(groups, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Assign whole groups to splits: in the order of their keys' hashes, filling test then val up to
    their share of lines, the rest train (deterministic for a seed, independent of row order)."""
    unique, inverse, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    hashes = stable_hashes((str(g) for g in unique.tolist()), seed)
    order = np.lexsort((np.arange(len(unique)), hashes))  # by hash; a (vanishing) tie by key
    assigned = np.full(len(unique), "train", dtype=object)
    targets = [("test", test_fraction * len(inverse)), ("val", val_fraction * len(inverse))]
    filled, target_i = 0.0, 0
    for idx in order:
        if target_i == len(targets):
            break
        name, goal = targets[target_i]
        assigned[idx] = name
        filled += sizes[idx]
        if filled >= goal:
            target_i, filled = target_i + 1, 0.0
    return assigned[inverse].astype(str)


def corpus_name(schema: pa.Schema, source_name: str = "") -> str:
    """The user's corpus a lyrics table was cleaned from (recorded by the clean stage in the schema
    metadata), for errors; `source_name` (the file read) for a table without that record."""
    return ((schema.metadata or {}).get(CORPUS_KEY) or b"").decode() or source_name


def split_labels(sources: list[str], cfg, corpus: str) -> np.ndarray:
    """Each line's split from its source file (the groups of `group_keys`), or a one-line error
    naming the corpus and how much text it needs when train, val and test cannot each get a group."""
    groups = group_keys(sources, cfg.block_lines)
    n_groups, n_files = len(set(groups)), len(set(sources))
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


def unseen_in_train(keys, labels) -> np.ndarray:
    """Which lines to keep: every train line, and the val/test lines whose key (a tokens hash, or the
    text) is not a train line's. Lyric corpora repeat whole songs and stock lines; left in, they
    reward memorising the training set (an n-gram baseline excels at it) and steer early stopping
    towards overfit models."""
    keys, train = np.asarray(keys), np.asarray(labels) == "train"
    return train | ~np.isin(keys, keys[train])


def check_eval_lines_left(labels, corpus: str) -> None:
    missing = [s for s in SPLITS if s not in set(labels)]
    if missing:
        raise PipelineError(
            f"{corpus}: no {'/'.join(missing)} lines left that are not repeats of train lines; "
            "add lyrics (other songs) or lower lyrics.split.block_lines"
        )


def line_hashes(tokens) -> np.ndarray:
    """A 64-bit hash of each line's tokens (an Arrow list column), to find repeated lines: equal
    lines, equal hashes (a collision, ~n²/2⁶⁵, would drop one val/test line)."""
    return stable_hashes(("\x1f".join(line) for line in tokens.to_pylist()), 0)


def hash_batch(batch, cfg) -> dict:
    """The first pass on one batch of `PLAN_COLUMNS`: its lines' source files and tokens hashes
    (`cfg` unused: the signature every task's split shares). A function of the batch alone, so the
    flows on Dask run it per shard and gather the results in file order for `plan_from_parts`."""
    return {"sources": batch.column("source").to_pylist(), "hashes": line_hashes(batch.column("tokens"))}


def plan_from_parts(parts, cfg, source_name: str = "", schema: pa.Schema | None = None) -> dict:
    """Each line's split and whether it is kept (see `unseen_in_train`), from every batch's
    `hash_batch` in file order; raises the one-line errors naming the corpus (too small to split, no
    val/test lines left)."""
    corpus = corpus_name(schema or pa.schema([]), source_name)
    sources, hashes = [], []
    for part in parts:
        sources += part["sources"]
        hashes.append(part["hashes"])
    labels = split_labels(sources, cfg, corpus)
    keep = unseen_in_train(np.concatenate(hashes), labels)
    check_eval_lines_left(labels[keep].tolist(), corpus)
    return {"codes": split_codes(pa.array(labels)), "keep": keep}


def plan_split(batches, cfg, source_name: str = "", schema: pa.Schema | None = None) -> dict:
    """First pass: each batch's sources and line hashes (`hash_batch`), then each line's split
    (`plan_from_parts`)."""
    return plan_from_parts((hash_batch(batch, cfg) for batch in batches), cfg, source_name, schema)


def apply_split(batch, plan: dict, start: int):
    """Second pass: `batch` (rows start.. of the file) with its `split` column, repeats of train
    lines left out."""
    rows = slice(start, start + batch.num_rows)
    return batch.append_column("split", split_array(plan["codes"][rows])).filter(pa.array(plan["keep"][rows]))


def check_split(plan: dict, codes: np.ndarray, source_name: str = "") -> dict:
    """What the split dropped (songs never straddle splits by construction: one group, one split)."""
    dropped = int((~plan["keep"]).sum())
    if dropped:
        log.info("split: dropped %d val/test lines that also occur in train", dropped)
    return {"dropped_repeats": dropped}


def split_by_group(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    """`table` with its `split` column, repeats of train lines left out: the stage's two passes over
    one in-memory table."""
    plan = plan_split(table.select(PLAN_COLUMNS).to_batches(), cfg, source_name, table.schema)
    out = apply_split(table, plan, 0)
    check_split(plan, split_codes(out.column("split")), source_name)
    return out


def split(table: pa.Table, cfg, source_name: str = "") -> pa.Table:
    """The split stage of this task: whole songs / blocks to train, val and test."""
    return split_by_group(table, cfg, source_name)
