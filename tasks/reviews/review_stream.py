"""The split's reviews streamed into training, so memory is bounded by a row group and the shuffle
buffer, not by the corpus: a million reviews train in the memory of a few thousand.

`count_split` is one pass over the small columns (split, label): the split sizes, the train class
counts and the class names. `SplitReader` reads one split's reviews a record batch at a time in file
order, encoded to ids in Arrow (validation, PPMI). `ReviewStream` is the training data: each epoch
reads the row groups in a seeded order, keeps this rank's share (every world-th train review),
mixes the reviews in a seeded shuffle buffer and yields length-bucketed, padded batches, the same
number on every rank. An epoch's batches depend on (seed, epoch, rank, world size) alone, so a run
killed mid-epoch resumes by replaying the epoch's stream up to the batch it stopped at
(tasks/training/loop.py).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tasks.common.errors import PipelineError
from tasks.reviews.batching import IdSequences
from tasks.split import SPLITS, read_batches, split_codes
from tasks.text.vocab import UNK, Vocab

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # ids (B, T) with <pad>=0, lengths (B,), labels (B,)


@dataclass(frozen=True)
class SplitCounts:
    reviews: dict[str, int]  # split name → reviews
    train_labels: np.ndarray  # (classes,) train reviews per class index
    names_by_label: dict[int, str]


def count_split(path: str | Path, batch_rows: int) -> SplitCounts:
    """One pass over the split file's `split`, `label` and `label_name` columns."""
    reviews = dict.fromkeys(SPLITS, 0)
    train_labels = np.zeros(0, dtype=np.int64)
    names_by_label: dict[int, str] = {}
    for batch in read_batches(path, ["label", "label_name", "split"], batch_rows):
        codes = split_codes(batch.column("split"))
        labels = batch.column("label").to_numpy(zero_copy_only=False).astype(np.int64)
        for code, n in enumerate(np.bincount(codes, minlength=len(SPLITS))):
            reviews[SPLITS[code]] += int(n)
        counts = np.bincount(labels[codes == 0])
        train_labels = np.pad(train_labels, (0, max(0, len(counts) - len(train_labels))))
        train_labels[: len(counts)] += counts
        _, first = np.unique(labels, return_index=True)  # one row per label for its name
        names = batch.column("label_name").take(pa.array(first)).to_pylist()
        names_by_label.update(zip(labels[first].tolist(), names))
    return SplitCounts(reviews, train_labels, names_by_label)


class SplitReader:
    """The reviews of one split file encoded with `vocab`, cut to `max_len` tokens, read
    `batch_rows` rows at a time."""

    def __init__(self, path: str | Path, vocab: Vocab, max_len: int, batch_rows: int):
        self.path, self.max_len, self.batch_rows = Path(path), max_len, batch_rows
        self.values, self.unk = pa.array(vocab.itos), vocab.stoi[UNK]

    def encode(self, tokens: pa.Array | pa.ChunkedArray) -> IdSequences:
        """Token lists → ids, vectorised in Arrow (equal to batching.encode_texts): out-of-vocabulary
        tokens are <unk>, each review is cut to `max_len`, an empty one becomes [<unk>] (packed
        sequences refuse zero lengths)."""
        if isinstance(tokens, pa.ChunkedArray):
            tokens = tokens.combine_chunks()
        lengths = pc.list_value_length(tokens).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        flat = pc.index_in(tokens.flatten(), value_set=self.values).fill_null(self.unk)
        flat = flat.to_numpy(zero_copy_only=False).astype(np.int32)  # (tokens,) every review's ids, whole
        starts = np.concatenate([[0], np.cumsum(lengths)])[:-1]
        within = np.arange(len(flat)) - np.repeat(starts, lengths)  # each token's position in its review
        kept = np.minimum(lengths, self.max_len)
        keep = within < np.repeat(kept, lengths)
        out_lengths = np.maximum(kept, 1)
        offsets = np.concatenate([[0], np.cumsum(out_lengths)])
        ids = np.full(int(offsets[-1]), self.unk, dtype=np.int32)  # an empty review keeps its one <unk>
        ids[np.repeat(offsets[:-1], kept) + within[keep]] = flat[keep]
        return IdSequences(ids, offsets)

    def batches(self, split: str, row_groups: list[int] | None = None) -> Iterator[tuple[IdSequences, np.ndarray]]:
        """The split's reviews as (ids, labels (n,) int64), a record batch at a time: in file order, or
        in the order of `row_groups` (a permutation of the file's), one row group read at a time."""
        columns = ["tokens", "label", "split"]
        if row_groups is None:
            tables = read_batches(self.path, columns, self.batch_rows)
        else:
            pf = pq.ParquetFile(self.path)
            tables = (
                b for g in row_groups for b in released(pf.read_row_group(g, columns).to_batches(self.batch_rows))
            )
        for batch in tables:
            batch = batch.filter(pc.equal(batch.column("split"), split))
            if batch.num_rows:
                labels = batch.column("label").to_numpy(zero_copy_only=False).astype(np.int64)
                yield self.encode(batch.column("tokens")), labels

    def sequences(self, split: str) -> Iterator[np.ndarray]:
        """Each review's ids of the split, in file order (PPMI's co-occurrence pass)."""
        for seqs, _ in self.batches(split):
            yield from seqs

    def row_groups(self) -> int:
        return pq.ParquetFile(self.path).num_row_groups


def released(batches: list[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """`batches`, with Arrow's allocator giving back freed pages after each (as tasks.split.read_batches)."""
    for batch in batches:
        yield batch
        pa.default_memory_pool().release_unused()


def pad(seqs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Id arrays → padded ids (B, T) with <pad>=0 and their lengths (B,)."""
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    x = np.zeros((len(seqs), int(lengths.max())), dtype=np.int64)  # (B, T)
    x[np.arange(x.shape[1]) < lengths[:, None]] = np.concatenate(seqs)  # row-major: each review's ids in turn
    return torch.from_numpy(x), torch.from_numpy(lengths)


class ReviewStream(IterableDataset):
    """The train reviews, an epoch of padded batches at a time (`set_epoch`, then iterate, as with
    torch's DistributedSampler). Rank `rank` of `world` takes every world-th train review of the
    epoch's row-group order and yields `len(self)` batches, the same count on every rank (DDP waits
    for all in each step). The shuffle buffer holds `shuffle_buffer` reviews: a corpus smaller than
    it is shuffled whole, a larger one as well as the buffer mixes its row groups; each pool of
    `batch_size * bucket_size` reviews leaving it is sorted by length, batched and the batches
    shuffled (little padding, still random order)."""

    def __init__(
        self,
        reader: SplitReader,
        train_reviews: int,
        batch_size: int,
        bucket_size: int,
        shuffle_buffer: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
    ):
        super().__init__()
        self.reader, self.train_reviews = reader, train_reviews
        self.batch_size, self.bucket_size = batch_size, bucket_size
        self.shuffle_buffer, self.seed, self.rank, self.world = shuffle_buffer, seed, rank, world
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Batches per rank and epoch: those of the smallest share (world-th of the reviews, rounded down)."""
        pool = self.batch_size * self.bucket_size
        share = self.train_reviews // self.world
        return share // pool * self.bucket_size + -(-(share % pool) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            raise PipelineError("ReviewStream: one DataLoader worker at most (each would yield the whole epoch)")
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([self.seed, self.epoch]).spawn(3)]
        order_rng, buffer_rng, batch_rng = rngs
        order = order_rng.permutation(self.reader.row_groups()).tolist()  # the same on every rank
        reviews = self.shuffled(self.my_reviews(order), buffer_rng)
        for n, batch in enumerate(self.bucketed(reviews, batch_rng)):
            if n == len(self):
                return  # a rank with one review more than the smallest share drops its extra batch
            yield batch

    def my_reviews(self, order: list[int]) -> Iterator[tuple[np.ndarray, int]]:
        """This rank's train reviews (ids, label) in the row-group order: train reviews k with
        k % world == rank, counted across the epoch's whole stream."""
        seen = 0
        for seqs, labels in self.reader.batches("train", order):
            first = (self.rank - seen) % self.world
            for i in range(first, len(seqs), self.world):
                yield seqs[i], int(labels[i])
            seen += len(seqs)

    def shuffled(self, reviews: Iterator[tuple[np.ndarray, int]], rng: np.random.Generator):
        """A shuffle buffer: once full, each review coming in takes the place of a random one, which
        goes out; at the end the rest goes out in a random order. Reviews are copied in, so the
        buffer holds its reviews' ids alone, not the record batches they came from."""
        buffer: list[tuple[np.ndarray, int]] = []
        draws: list[int] = []
        for ids, label in reviews:
            if len(buffer) < self.shuffle_buffer:
                buffer.append((ids.copy(), label))
                continue
            if not draws:
                draws = rng.integers(self.shuffle_buffer, size=4096).tolist()
            j = draws.pop()
            yield buffer[j]
            buffer[j] = (ids.copy(), label)
        for j in rng.permutation(len(buffer)).tolist():
            yield buffer[j]

    def bucketed(self, reviews, rng: np.random.Generator) -> Iterator[Batch]:
        pool: list[tuple[np.ndarray, int]] = []
        for review in reviews:
            pool.append(review)
            if len(pool) == self.batch_size * self.bucket_size:
                yield from self.pool_batches(pool, rng)
                pool = []
        if pool:
            yield from self.pool_batches(pool, rng)

    def pool_batches(self, pool: list[tuple[np.ndarray, int]], rng: np.random.Generator) -> Iterator[Batch]:
        by_length = sorted(pool, key=lambda review: len(review[0]))  # stable: ties keep the buffer's order
        cuts = [by_length[i : i + self.batch_size] for i in range(0, len(by_length), self.batch_size)]
        for k in rng.permutation(len(cuts)).tolist():
            x, lengths = pad([ids for ids, _ in cuts[k]])
            yield x, lengths, torch.tensor([label for _, label in cuts[k]], dtype=torch.long)
