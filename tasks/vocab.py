"""Stage `vocab`: the training split's tokens → vocab.json (fixed special ids, counts, OOV rates).
With a pretrained base (`<task>.base_model`) the vocabulary is the base's, extended with the train
split's tokens it lacks, so fine-tuning keeps the base's embedding rows and loses no character.

Tokens are counted per split from record batches of the split file (`<task>.vocab.batch_rows`
rows each), so memory grows with the distinct tokens, not with the corpus.

python -m tasks.vocab [--task lyrics|reviews] [--params params.yaml] [--set lyrics.vocab.min_freq=2]
"""

import logging
from collections import Counter

from tasks.common.atomic import write_json
from tasks.common.cli import stage_main
from tasks.common.params import base_model_of, task_section
from tasks.text.vocab import (
    BATCH_ROWS,
    extend_from_counts,
    oov_rate_of_counts,
    token_counts_by_split,
    vocab_from_counts,
)

log = logging.getLogger(__name__)


def batch_rows(cfg) -> int:
    """Rows per record batch read from the split file (`<task>.vocab.batch_rows`, if the task has it)."""
    return getattr(cfg, "batch_rows", BATCH_ROWS)


def run(params, task: str = "lyrics", splits: dict[str, Counter] | None = None) -> dict:
    """The stage. `splits`: the split file's token counts per split when counted elsewhere (the
    flows on Dask add them up from shards); by default this process streams them from the file."""
    tp = task_section(params, task)
    cfg = tp.vocab
    if splits is None:
        splits = token_counts_by_split(cfg.input, batch_rows(cfg))
    counts = splits["train"]
    base_model = base_model_of(tp)  # a task that fine-tunes a pretrained base
    if base_model:
        from tasks.training.base_model import load_base  # noqa: PLC0415 (torch: only with a base)

        base_itos = load_base(base_model, tp.tokenize.level, f"{task}.base_model")["itos"]
        vocab = extend_from_counts(base_itos, counts, cfg.min_freq, cfg.max_size)
        log.info("vocab: the base's %d tokens + %d from the train split", len(base_itos), len(vocab) - len(base_itos))
    else:
        vocab = vocab_from_counts(counts, cfg.min_freq, cfg.max_size)
    train_tokens = sum(counts.values())
    report = {
        "size": len(vocab),
        "hash": vocab.hash,
        "train_tokens": train_tokens,
        "train_coverage": sum(counts[t] for t in vocab.itos if t in counts) / max(train_tokens, 1),
        "oov_rate": {s: oov_rate_of_counts(splits[s], vocab) for s in ("val", "test")},
    }
    write_json({**report, "itos": vocab.itos, "counts": {t: counts.get(t, 0) for t in vocab.itos}}, cfg.output)
    log.info(
        "vocab: %d tokens, train coverage %.3f, OOV val %.3f test %.3f -> %s",
        len(vocab),
        report["train_coverage"],
        report["oov_rate"]["val"],
        report["oov_rate"]["test"],
        cfg.output,
    )
    return report


if __name__ == "__main__":
    stage_main(run, __doc__)
