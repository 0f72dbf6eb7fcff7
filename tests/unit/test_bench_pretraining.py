"""The pretraining bench's pure helpers: the bits-per-character arithmetic that compares the
fine-tuned and from-scratch runs, the corpus copies of the memory measure, and the timed windows."""

import math

import pytest
import torch

from benchmarks.pretraining import shard_corpus, timed_windows, val_bits_per_char, write_corpus
from tasks.lyrics.batching import batchify
from tasks.lyrics.bits_per_char import UNK_CHAR_BITS
from tasks.text.vocab import SPECIALS, Vocab


def test_bits_per_char_by_hand():
    # stream 我 爱你 <eos>: 2 scored tokens (爱你, <eos>) = 3 characters; ppl e -> 1 nat a token
    lines = [["我", "爱你"]]
    assert val_bits_per_char(math.e, lines, Vocab(SPECIALS + ["我", "爱你"])) == pytest.approx(2 / math.log(2) / 3)
    # 爱你 out of the vocabulary: its two characters are charged their spelling on top
    charged = (2 / math.log(2) + 2 * UNK_CHAR_BITS) / 3
    assert val_bits_per_char(math.e, lines, Vocab(SPECIALS + ["我"])) == pytest.approx(charged)


def test_corpus_copies_hold_the_lines_times_over(tmp_path):
    lines = ["迈向充满希望的新世纪", "一九九八年新年讲话"]
    one = write_corpus(lines, tmp_path / "one.txt", 1)
    big = write_corpus(lines, tmp_path / "big.txt", 3)
    assert big.read_text(encoding="utf-8").splitlines() == lines * 3
    shards = sorted(shard_corpus(one, tmp_path / "shards", 3).iterdir())
    assert len(shards) == 3
    assert all(p.read_bytes() == one.read_bytes() for p in shards)


def test_timed_windows_cycle_until_the_time_is_up():
    data = batchify(torch.arange(41), 2)  # (20, 2): windows of 5 -> 4 per pass
    assert len(list(timed_windows(data, 5, 0))) == 1  # the time is checked after each window
    batches = timed_windows(data, 5, 60)
    first = [next(batches) for _ in range(5)]
    assert torch.equal(first[4][0], first[0][0])  # the fifth window is the first again
