"""Stage `vocab`: the training split's tokens → vocab.json (fixed special ids, counts, OOV rates).

    python -m tasks.vocab [--task lyrics|reviews] [--params params.yaml] [--set lyrics.vocab.min_freq=2]
"""

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from tasks.atomic import write_json
from tasks.cli import stage_main
from tasks.params import task_section

log = logging.getLogger(__name__)
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
    ranked = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS), key=lambda t: (-counts[t], t))
    return Vocab(SPECIALS + ranked[: max(0, max_size - len(SPECIALS))]), counts


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


def run(params, task: str = "lyrics") -> dict:
    cfg = task_section(params, task).vocab
    splits = tokens_by_split(cfg.input)
    vocab, counts = build_vocab(splits["train"], cfg.min_freq, cfg.max_size)
    train_tokens = sum(counts.values())
    report = {
        "size": len(vocab),
        "hash": vocab.hash,
        "train_tokens": train_tokens,
        "train_coverage": sum(counts[t] for t in vocab.itos if t in counts) / max(train_tokens, 1),
        "oov_rate": {s: oov_rate(splits[s], vocab) for s in ("val", "test")},
    }
    write_json({**report, "itos": vocab.itos, "counts": {t: counts.get(t, 0) for t in vocab.itos}}, cfg.output)
    log.info("vocab: %d tokens, train coverage %.3f, OOV val %.3f test %.3f -> %s", len(vocab),
             report["train_coverage"], report["oov_rate"]["val"], report["oov_rate"]["test"], cfg.output)
    return report


if __name__ == "__main__":
    stage_main(run, __doc__)
