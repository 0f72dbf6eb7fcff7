"""The vocabulary: fixed special ids, tokens ranked by count, encode / decode, OOV rates."""

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = [PAD, UNK, BOS, EOS]  # ids 0..3, fixed: checkpoints and padding code rely on them


@dataclass
class Vocab:
    itos: list[str]
    stoi: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        unk = self.stoi[UNK]
        return [self.stoi.get(t, unk) for t in tokens]

    def decode(self, ids: list[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    @property
    def hash(self) -> str:
        return hashlib.sha256("\n".join(self.itos).encode()).hexdigest()[:16]


def build_vocab(token_lists: list[list[str]], min_freq: int, max_size: int) -> tuple[Vocab, Counter]:
    """Specials first, then tokens by falling count (ties by token, for determinism)."""
    counts = Counter(tok for tokens in token_lists for tok in tokens)
    ranked = sorted(
        (t for t, c in counts.items() if c >= min_freq and t not in SPECIALS), key=lambda t: (-counts[t], t)
    )
    return Vocab(SPECIALS + ranked[: max(0, max_size - len(SPECIALS))]), counts


def extend_vocab(
    base_itos: list[str], token_lists: list[list[str]], min_freq: int, max_size: int
) -> tuple[Vocab, Counter]:
    """A pretrained base's vocabulary (its ids unchanged, so its embedding rows still fit) followed
    by the training tokens it lacks (count >= min_freq, by falling count), up to max_size in all;
    the base's own tokens are never dropped."""
    counts = Counter(tok for tokens in token_lists for tok in tokens)
    known = set(base_itos)
    new = sorted((t for t, c in counts.items() if c >= min_freq and t not in known), key=lambda t: (-counts[t], t))
    return Vocab(list(base_itos) + new[: max(0, max_size - len(base_itos))]), counts


def oov_rate(token_lists: list[list[str]], vocab: Vocab) -> float:
    total = sum(len(t) for t in token_lists)
    oov = sum(tok not in vocab.stoi for tokens in token_lists for tok in tokens)
    return oov / total if total else 0.0


def load_vocab(path: str | Path) -> Vocab:
    return Vocab(json.loads(Path(path).read_text(encoding="utf-8"))["itos"])


def tokens_by_split(path: str | Path) -> dict[str, list[list[str]]]:
    table = pq.read_table(path, columns=["tokens", "split"]).to_pydict()
    out: dict[str, list[list[str]]] = {"train": [], "val": [], "test": []}
    for tokens, split in zip(table["tokens"], table["split"]):
        out[split].append(tokens)
    return out
