"""The pretraining corpus as token ids, streamed: one counting pass (the vocabulary and the corpus
size), then epochs of a fixed number of tokens cut from the corpus read in a cycle.

An "epoch" of pretraining is `epoch_tokens` tokens, not a pass over the corpus: validation,
checkpoints, the LR schedule and early stopping happen at that interval whatever the corpus size,
and only one epoch's ids (8 bytes a token) are in memory. Epoch k starts at token k * epoch_tokens
of the corpus repeated end to end, so a resumed run reads exactly the tokens an unbroken one would.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from tasks.common.errors import PipelineError
from tasks.text.segment import segment
from tasks.text.vocab import EOS, SPECIALS, Vocab

Lines = Callable[[], Iterable[str]]  # a fresh pass over the (normalised) lines of one split


def char_tokens(line: str) -> list[str]:
    """A line's tokens at character level, exactly as the lyrics tokenize stage cuts them
    (a run of Latin letters or digits stays one token)."""
    return segment(line, "char", False, None, "jieba")


@dataclass
class CorpusCounts:
    tokens: int  # tokens of one pass, <eos> per line included
    lines: int
    counts: Counter  # token → count (bounded by the alphabet, not the corpus)


def count_tokens(lines: Iterable[str]) -> CorpusCounts:
    """One streaming pass: token counts and sizes."""
    counts, n_lines = Counter(), 0
    for line in lines:
        counts.update(char_tokens(line))
        n_lines += 1
    return CorpusCounts(sum(counts.values()) + n_lines, n_lines, counts)


def pretraining_vocab(counts: Counter, min_freq: int, max_size: int) -> Vocab:
    """Specials first, then the corpus's tokens by falling count (ties by token)."""
    ranked = sorted(
        (t for t, c in counts.items() if c >= min_freq and t not in SPECIALS), key=lambda t: (-counts[t], t)
    )
    return Vocab(SPECIALS + ranked[: max(0, max_size - len(SPECIALS))])


def line_ids(lines: Iterable[str], vocab: Vocab) -> Iterator[list[int]]:
    """Each line's ids followed by <eos>."""
    eos = vocab.stoi[EOS]
    for line in lines:
        yield vocab.encode(char_tokens(line)) + [eos]


def epoch_ids(lines: Lines, vocab: Vocab, epoch: int, epoch_tokens: int, corpus_tokens: int) -> torch.Tensor:
    """The (epoch_tokens,) ids of 1-based `epoch`: tokens [(epoch-1) * epoch_tokens, epoch * epoch_tokens)
    of the corpus read in a cycle; the corpus is streamed, never held."""
    if corpus_tokens < 2:
        raise PipelineError("the pretraining corpus has no text after normalising; check pretrain.corpus")
    skip = ((epoch - 1) * epoch_tokens) % corpus_tokens
    out: list[int] = []
    while len(out) < epoch_tokens:
        for ids in line_ids(lines(), vocab):
            if skip >= len(ids):
                skip -= len(ids)
                continue
            out += ids[skip:]
            skip = 0
            if len(out) >= epoch_tokens:
                break
    return torch.tensor(out[:epoch_tokens], dtype=torch.long)


def bounded_stream(lines: Iterable[str], vocab: Vocab, max_tokens: int) -> torch.Tensor:
    """The first `max_tokens` ids of the lines (the validation stream, kept in memory: bounded)."""
    out: list[int] = []
    for ids in line_ids(lines, vocab):
        out += ids
        if len(out) >= max_tokens:
            break
    return torch.tensor(out[:max_tokens], dtype=torch.long)
