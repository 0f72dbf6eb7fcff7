"""Classifier batches: variable-length reviews, padded per batch, batches bucketed by length."""

from collections.abc import Sequence

import numpy as np
import torch

from tasks.text.vocab import UNK, Vocab


def encode_texts(token_lists: list[list[str]], vocab: Vocab, max_len: int) -> list[list[int]]:
    """Token lists → id lists cut to `max_len`; an empty one becomes [<unk>] so every review has a
    length >= 1 (pack_padded_sequence refuses zero lengths)."""
    unk = vocab.stoi[UNK]
    return [vocab.encode(tokens[:max_len]) or [unk] for tokens in token_lists]


class IdSequences(Sequence):
    """Id sequences kept as one flat int32 array and its offsets: 4 bytes a token, where a list of
    Python int lists costs about ten times that (a record batch of reviews, encoded by
    review_stream.SplitReader). Item i is a view of the flat array (its length is the review's)."""

    def __init__(self, ids: np.ndarray, offsets: np.ndarray):
        self.ids, self.offsets = ids, offsets  # (tokens,) int32; (reviews + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self.ids[self.offsets[i] : self.offsets[i + 1]]


def bucket_batches(
    lengths: list[int], batch_size: int, bucket_size: int = 50, shuffle: bool = True, seed: int = 0
) -> list[list[int]]:
    """Index batches of similar lengths: shuffle, cut into pools of `bucket_size` batches, sort each
    pool by length, batch it, then shuffle the batch order. Little padding, still random order.
    Without shuffle: one length-sorted pass (evaluation)."""
    if not shuffle:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=rng).tolist()
    pool = batch_size * bucket_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=rng).tolist()]


def pad_batch(seqs: list[list[int]], indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequences at `indices` → padded ids (B, T) with <pad>=0 and their lengths (B,)."""
    lengths = torch.tensor([len(seqs[i]) for i in indices], dtype=torch.long)
    x = torch.zeros(len(indices), int(lengths.max()), dtype=torch.long)  # (B, T)
    for row, i in enumerate(indices):
        x[row, : len(seqs[i])] = torch.as_tensor(seqs[i], dtype=torch.long)
    return x, lengths
