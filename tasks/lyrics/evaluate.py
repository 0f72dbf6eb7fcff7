"""Evaluating the language model: test perplexity and OOV rate beside an interpolated Kneser-Ney
baseline fitted on the same train split and scored on the same test tokens (both also with a cache
of the recent text, reported as such); samples; metrics.json and learning-curve plots."""

import hashlib
import logging
from pathlib import Path

from tasks.common.atomic import write_json, write_text
from tasks.common.plots import plot_history
from tasks.common.tracking import log_evaluation
from tasks.lyrics.batching import lm_stream
from tasks.lyrics.kneser_ney import KneserNeyLM, fit_unigram_cache
from tasks.lyrics.kneser_ney import perplexities as kn_perplexities
from tasks.lyrics.neural_cache import perplexities
from tasks.serving.lyrics_generator import generate_text, load_checkpoint
from tasks.text.vocab import Vocab, oov_rate, tokens_by_split
from tasks.training.device import set_threads
from tasks.training.run import stopped_by_of

log = logging.getLogger(__name__)


def seen_in(lines: list[list[str]], reference: list[list[str]]) -> float:
    """Fraction of `lines` that occur verbatim (same tokens) among `reference` lines."""
    known = {tuple(tokens) for tokens in reference}
    return sum(tuple(tokens) in known for tokens in lines) / max(len(lines), 1)


def eval_set_hash(test_tokens: list[list[str]], vocab: Vocab) -> str:
    """Identifies the test split and vocabulary: perplexities are comparable only when it matches."""
    digest = hashlib.sha256(vocab.hash.encode())
    for tokens in test_tokens:
        digest.update(("\x1f".join(tokens) + "\n").encode())
    return digest.hexdigest()[:16]


def perplexity_metrics(model, vocab: Vocab, splits: dict[str, list[list[str]]], ngram_order: int) -> dict:
    """The model's test perplexity beside the Kneser-Ney baseline's on the same tokens, both
    also with a cache fitted on validation, plus what explains the comparison (OOV, repeats)."""
    test_stream, val_stream = (lm_stream(splits[s], vocab) for s in ("test", "val"))  # (N,)
    # The model scores the test text with its continuous cache when training fitted one (tasks/neural_cache.py).
    test_ppl_alone, test_ppl = perplexities(model, test_stream, model.cache)
    kn = KneserNeyLM(ngram_order).fit(lm_stream(splits["train"], vocab).tolist(), len(vocab))
    kn_ppl, kn_cache_ppl = kn_perplexities(kn, test_stream.tolist(), fit_unigram_cache(kn, val_stream.tolist()))
    metrics = {
        "test_perplexity": test_ppl,
        "kneser_ney_perplexity": kn_ppl,
        "ratio_to_kneser_ney": test_ppl / kn_ppl,
        # Both models without / with a cache of the recent text, so the share of the lead that the
        # cache makes (the test split repeats its own choruses) can be read off.
        "test_perplexity_without_cache": test_ppl_alone,
        "kneser_ney_cache_perplexity": kn_cache_ppl,
        "ratio_to_kneser_ney_cache": test_ppl / kn_cache_ppl,
        "cache_lambda": model.cache["lam"] if model.cache else 0.0,
        "test_oov_rate": oov_rate(splits["test"], vocab),
        # Lines the test split shares verbatim with train (repeated songs): memorisable, so they
        # favour the n-gram baseline; reported so the comparison can be read with that in mind.
        "test_lines_seen_in_train": seen_in(splits["test"], splits["train"]),
        "val_lines_seen_in_train": seen_in(splits["val"], splits["train"]),
        "test_tokens": int(test_stream.numel()),
        "eval_set_hash": eval_set_hash(splits["test"], vocab),
    }
    return metrics


def evaluate(params, lp, task: str) -> dict:
    """The evaluate stage of this task: metrics.json, samples.md and learning curves, logged to the run."""
    cfg = lp.evaluate
    set_threads(lp.train.num_threads)
    model, vocab, tokenizer = load_checkpoint(Path(lp.train.output_dir) / "model.pt")
    metrics = perplexity_metrics(model, vocab, tokens_by_split(lp.split.output), cfg.ngram_order)
    # what ended training (epochs | early_stopping | max_minutes), so a budget-cut run is not read as converged
    metrics["stopped_by"] = stopped_by_of(Path(lp.train.output_dir) / "model.pt")
    sampling = {"temperature": cfg.temperature, "top_k": cfg.top_k, "seed": cfg.seed}
    samples = [
        f"## {start}\n{generate_text(model, vocab, tokenizer, start, cfg.sample_length, **sampling)}\n"
        for start in cfg.sample_starts
    ]
    out = Path(cfg.output_dir)
    write_json(metrics, cfg.metrics)
    write_text("\n".join(samples), out / "samples.md")
    plot_history(lp.train.history, out / "learning_curves.png")

    log_evaluation(params, task, lp, metrics, out, ("metrics.json", "samples.md", "learning_curves.png"))
    test_ppl, kn_ppl = metrics["test_perplexity"], metrics["kneser_ney_perplexity"]
    log.info(
        "test perplexity %.1f vs Kneser-Ney (order %d) %.1f: ratio %.2f; OOV %.1f%%",
        test_ppl,
        cfg.ngram_order,
        kn_ppl,
        metrics["ratio_to_kneser_ney"],
        100 * metrics["test_oov_rate"],
    )
    log.info(
        "without caches: LSTM %.1f, Kneser-Ney %.1f; both with a cache: LSTM %.1f, Kneser-Ney %.1f (ratio %.2f)",
        metrics["test_perplexity_without_cache"],
        kn_ppl,
        test_ppl,
        metrics["kneser_ney_cache_perplexity"],
        metrics["ratio_to_kneser_ney_cache"],
    )
    return metrics
