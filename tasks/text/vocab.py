"""The vocabulary: fixed special ids, tokens ranked by count, encode / decode, OOV rates.

Built from token lists in memory (`build_vocab`, `extend_vocab`, `oov_rate`) or from token counts
(`vocab_from_counts`, `extend_from_counts`, `oov_rate_of_counts`), which the vocab stage streams
from the split file (`token_counts_by_split`), or adds up from shards of it (`sum_counts` of
`count_tokens`, the flows on Dask): the same vocabulary every way."""

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = [PAD, UNK, BOS, EOS]  # ids 0..3, fixed: checkpoints and padding code rely on them
SPLITS = ("train", "val", "test")
COUNT_COLUMNS = ["tokens", "split"]  # what counting reads of a split file
# Rows per record batch when params set no `<task>.vocab.batch_rows`: about one small corpus, so
# memory stays where a small corpus puts it however many batches a large one has.
BATCH_ROWS = 16384


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


def vocab_from_counts(counts: Counter, min_freq: int, max_size: int) -> Vocab:
    """Specials first, then tokens by falling count (ties by token, for determinism)."""
    ranked = sorted(
        (t for t, c in counts.items() if c >= min_freq and t not in SPECIALS), key=lambda t: (-counts[t], t)
    )
    return Vocab(SPECIALS + ranked[: max(0, max_size - len(SPECIALS))])


def build_vocab(token_lists: list[list[str]], min_freq: int, max_size: int) -> tuple[Vocab, Counter]:
    """`vocab_from_counts` on the tokens of `token_lists`; also returns their counts."""
    counts = Counter(tok for tokens in token_lists for tok in tokens)
    return vocab_from_counts(counts, min_freq, max_size), counts


def extend_from_counts(base_itos: list[str], counts: Counter, min_freq: int, max_size: int) -> Vocab:
    """A pretrained base's vocabulary (its ids unchanged, so its embedding rows still fit) followed
    by the training tokens it lacks (count >= min_freq, by falling count), up to max_size in all;
    the base's own tokens are never dropped."""
    known = set(base_itos)
    new = sorted((t for t, c in counts.items() if c >= min_freq and t not in known), key=lambda t: (-counts[t], t))
    return Vocab(list(base_itos) + new[: max(0, max_size - len(base_itos))])


def extend_vocab(
    base_itos: list[str], token_lists: list[list[str]], min_freq: int, max_size: int
) -> tuple[Vocab, Counter]:
    """`extend_from_counts` on the tokens of `token_lists`; also returns their counts."""
    counts = Counter(tok for tokens in token_lists for tok in tokens)
    return extend_from_counts(base_itos, counts, min_freq, max_size), counts


def oov_rate(token_lists: list[list[str]], vocab: Vocab) -> float:
    total = sum(len(t) for t in token_lists)
    oov = sum(tok not in vocab.stoi for tokens in token_lists for tok in tokens)
    return oov / total if total else 0.0


def oov_rate_of_counts(counts: Counter, vocab: Vocab) -> float:
    """`oov_rate` of the tokens these counts count."""
    total = sum(counts.values())
    oov = sum(c for tok, c in counts.items() if tok not in vocab.stoi)
    return oov / total if total else 0.0


def load_vocab(path: str | Path) -> Vocab:
    return Vocab(json.loads(Path(path).read_text(encoding="utf-8"))["itos"])


def tokens_by_split(path: str | Path) -> dict[str, list[list[str]]]:
    table = pq.read_table(path, columns=["tokens", "split"]).to_pydict()
    out: dict[str, list[list[str]]] = {"train": [], "val": [], "test": []}
    for tokens, split in zip(table["tokens"], table["split"]):
        out[split].append(tokens)
    return out


def count_tokens(batches: Iterable[pa.RecordBatch]) -> dict[str, Counter]:
    """Token counts per split (train, val, test) of record batches of a split file's `tokens` and
    `split` columns, counted in Arrow: memory grows with the distinct tokens, not with the rows."""
    counts = {name: Counter() for name in SPLITS}
    for batch in batches:
        for name in pc.unique(batch.column("split")).to_pylist():
            rows = pc.filter(batch.column("tokens"), pc.equal(batch.column("split"), name))
            tally = pc.value_counts(pc.list_flatten(rows))  # struct<values, counts>, one per distinct token
            counts.setdefault(name, Counter()).update(
                dict(zip(tally.field("values").to_pylist(), tally.field("counts").to_pylist()))
            )
        # Arrow's allocator (mimalloc) keeps freed pages otherwise: memory would grow with the batches.
        pa.default_memory_pool().release_unused()
    return counts


def token_counts_by_split(path: str | Path, batch_rows: int = BATCH_ROWS) -> dict[str, Counter]:
    """`count_tokens` of a whole split file, read in record batches of `batch_rows` rows (unlike
    `tokens_by_split`, which holds every token list)."""
    # A 1 MiB read buffer decodes page by page; unbuffered reads load whole column chunks.
    pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    return count_tokens(pf.iter_batches(batch_size=batch_rows, columns=COUNT_COLUMNS))


def sum_counts(parts: Iterable[dict[str, Counter]]) -> dict[str, Counter]:
    """The token counts per split of several parts of a file (the flows' Dask shards) added up: the
    counts `token_counts_by_split` gives for the whole file."""
    total = {name: Counter() for name in SPLITS}
    for part in parts:
        for name, counts in part.items():
            total.setdefault(name, Counter()).update(counts)
    return total
