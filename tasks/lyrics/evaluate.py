"""Evaluating the language model alone: test perplexity and bits per character (tasks/lyrics/bits_per_char.py)
beside an interpolated Kneser-Ney baseline fitted on the same train split and scored on the same test
tokens, and a character-level Kneser-Ney on the same test text (the yardstick every tokenization
shares); the same with a test-time cache of the recent text, reported as the cached variant;
generation measured against real held-out lyrics (tasks/lyrics/generation_stats.py) with the
sampling setting chosen on validation (tasks/lyrics/sampling_choice.py); samples; metrics.json and
learning-curve plots."""

import hashlib
import logging
from pathlib import Path

from tasks.common.atomic import write_json, write_text
from tasks.common.plots import plot_history
from tasks.common.tracking import load_run_id, log_evaluation
from tasks.lyrics.batching import lm_stream
from tasks.lyrics.bits_per_char import (
    bits_per_char,
    eval_text_hash,
    scored_chars,
    text_lines,
    total_nll,
    unk_spelling_bits,
)
from tasks.lyrics.generation_stats import STATS, ngram_set
from tasks.lyrics.kneser_ney import KneserNeyLM, char_bits_per_char, fit_unigram_cache
from tasks.lyrics.kneser_ney import perplexities as kn_perplexities
from tasks.lyrics.neural_cache import perplexities
from tasks.lyrics.sampling_choice import choose_sampling, draw_starts, grid_settings, sample_and_score
from tasks.serving.lyrics_generator import generate_batch, load_checkpoint, render, start_tokens
from tasks.text.vocab import SPECIALS, Vocab, oov_rate, tokens_by_split
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
    """The model alone on the test tokens (perplexity, bits per character) beside the Kneser-Ney
    baseline on the same tokens and a character-level Kneser-Ney on the same text; then both
    models with a test-time cache (fitted on validation) as the cached variant; what explains the
    comparison (OOV, repeats); and the hashes that say what was scored."""
    test_stream, val_stream = (lm_stream(splits[s], vocab) for s in ("test", "val"))  # (N,)
    ppl, ppl_cache = perplexities(model, test_stream, model.cache)  # the cache: tasks/lyrics/neural_cache.py
    kn = KneserNeyLM(ngram_order).fit(lm_stream(splits["train"], vocab).tolist(), len(vocab))
    kn_ppl, kn_cache_ppl = kn_perplexities(kn, test_stream.tolist(), fit_unigram_cache(kn, val_stream.tolist()))
    scored, chars = test_stream.numel() - 1, scored_chars(splits["test"])
    unk_bits = unk_spelling_bits(splits["test"], vocab)

    def bpc(perplexity: float) -> float:
        return bits_per_char(total_nll(perplexity, scored), unk_bits, chars)

    return {
        "test_perplexity": ppl,
        "kneser_ney_perplexity": kn_ppl,
        "ratio_to_kneser_ney": ppl / kn_ppl,
        "test_bits_per_char": bpc(ppl),
        "kneser_ney_bits_per_char": bpc(kn_ppl),
        "char_kneser_ney_bits_per_char": char_bits_per_char(
            text_lines(splits["train"]), text_lines(splits["test"]), ngram_order
        ),
        # The cached variant: both models with a cache of the recent test text, so the share of a
        # lead that the cache makes (the test split repeats its own choruses) can be read off.
        "test_perplexity_with_cache": ppl_cache,
        "kneser_ney_cache_perplexity": kn_cache_ppl,
        "ratio_to_kneser_ney_cache": ppl_cache / kn_cache_ppl,
        "test_bits_per_char_with_cache": bpc(ppl_cache),
        "kneser_ney_cache_bits_per_char": bpc(kn_cache_ppl),
        "cache_lambda": model.cache["lam"] if model.cache else 0.0,
        "test_oov_rate": oov_rate(splits["test"], vocab),
        # Lines the test split shares verbatim with train (repeated songs): memorisable, so they
        # favour the n-gram baseline; reported so the comparison can be read with that in mind.
        "test_lines_seen_in_train": seen_in(splits["test"], splits["train"]),
        "val_lines_seen_in_train": seen_in(splits["val"], splits["train"]),
        "test_tokens": int(test_stream.numel()),
        "test_chars": chars,
        "eval_set_hash": eval_set_hash(splits["test"], vocab),
        "eval_text_hash": eval_text_hash(splits["test"]),
    }


def generation_metrics(model, vocab: Vocab, tokenizer: dict, splits: dict, cfg) -> tuple[dict, list, dict]:
    """Choose the sampling setting on validation, then sample the test start words with it and
    measure the samples beside real test lyrics: (flat metrics, [(start, sample)], sampling.json)."""

    def sample(starts: list[list[str]], setting: dict, seed: int) -> list[str]:
        seeds = [seed + i for i in range(len(starts))]
        guard = {"repetition_window": cfg.repetition_window}
        return [render(t) for t in generate_batch(model, vocab, starts, cfg.sample_length, seeds, **setting, **guard)]

    train_ngrams = ngram_set(text_lines(splits["train"]))
    known = set(vocab.stoi) - set(SPECIALS)
    val_starts = draw_starts(splits["val"], cfg.grid_starts, known, cfg.seed)
    settings = grid_settings(cfg.sampling_grid.model_dump())
    chosen, rows = choose_sampling(sample, settings, val_starts, text_lines(splits["val"]), train_ngrams, cfg.seed)
    starts = [start_tokens(s, vocab, tokenizer) for s in cfg.sample_starts]
    starts += draw_starts(splits["test"], cfg.extra_starts, known, cfg.seed)
    test = sample_and_score(sample, chosen, starts, text_lines(splits["test"]), train_ngrams, cfg.seed)
    metrics = {f"generated_{k}": test["generated"][k] for k in STATS}
    metrics |= {f"real_{k}": test["real"][k] for k in STATS}
    metrics |= {"generation_samples": len(starts), "generation_distance": test["distance"]}
    metrics |= {f"sampling.{k}": v for k, v in {**chosen, "repetition_window": cfg.repetition_window}.items()}
    headers = list(cfg.sample_starts) + ["".join(s) for s in starts[len(cfg.sample_starts) :]]
    report = {
        "chosen": chosen,
        "repetition_window": cfg.repetition_window,
        "validation_starts": ["".join(s) for s in val_starts],
        "grid": rows,
        "test": {k: test[k] for k in ("generated", "real", "distance")},
    }
    return metrics, list(zip(headers, test["texts"])), report


STAT_NAMES = {
    "adjacent_repeat_rate": "adjacent repeat rate",
    "top5_char_share": "top-5 character share",
    "distinct_2": "distinct character bigrams (distinct-2)",
    "train_8gram_rate": "8-character windows found in train",
}


def samples_markdown(metrics: dict, samples: list[tuple[str, str]], report: dict) -> str:
    setting = ", ".join(f"{k} {v}" for k, v in report["chosen"].items())
    lines = [
        "# Samples",
        "",
        f"Sampling chosen on validation (sampling.json): {setting}; repetition window {report['repetition_window']}.",
        "",
        f"Statistics over the Han characters of the {len(samples)} samples and of real held-out (test) lyrics",
        "cut to the same lengths:",
        "",
        "| statistic | generated | real |",
        "|---|---|---|",
    ]
    for key, name in STAT_NAMES.items():
        lines.append(f"| {name} | {metrics[f'generated_{key}']:.3f} | {metrics[f'real_{key}']:.3f} |")
    lines.append("")
    for start, text in samples:
        lines += [f"## {start}", text, ""]
    return "\n".join(lines)


def log_sampling_params(lp, sampling: dict) -> None:
    """The chosen sampling as MLflow params of the run. A rerun of evaluate that chose otherwise
    on the same run cannot change them (MLflow params are write-once): metrics.json and the run's
    `sampling.*` metrics hold the current choice, and a warning says so."""
    import mlflow  # noqa: PLC0415 (log_evaluation has configured the store)

    run_id = load_run_id(lp.train.output_dir)
    logged = mlflow.MlflowClient().get_run(run_id).data.params
    wanted = {f"sampling.{k}": str(v) for k, v in sampling.items()}
    clash = {k: f"{logged[k]} (now {v})" for k, v in wanted.items() if k in logged and logged[k] != v}
    if clash:
        log.warning("run %s keeps its earlier sampling params %s; the new choice is in metrics.json", run_id, clash)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params({k: v for k, v in wanted.items() if k not in logged})


def evaluate(params, lp, task: str) -> dict:
    """The evaluate stage of this task: metrics.json, samples.md, sampling.json and learning curves,
    logged to the run."""
    cfg = lp.evaluate
    set_threads(lp.train.num_threads)
    model, vocab, tokenizer = load_checkpoint(Path(lp.train.output_dir) / "model.pt")
    splits = tokens_by_split(lp.split.output)
    metrics = perplexity_metrics(model, vocab, splits, cfg.ngram_order)
    # what ended training (epochs | early_stopping | max_minutes), so a budget-cut run is not read as converged
    metrics["stopped_by"] = stopped_by_of(Path(lp.train.output_dir) / "model.pt")
    generated, samples, report = generation_metrics(model, vocab, tokenizer, splits, cfg)
    metrics |= generated
    out = Path(cfg.output_dir)
    write_json(metrics, cfg.metrics)
    write_json(report, out / "sampling.json")
    write_text(samples_markdown(metrics, samples, report), out / "samples.md")
    plot_history(lp.train.history, out / "learning_curves.png")

    files = ("metrics.json", "samples.md", "sampling.json", "learning_curves.png")
    log_evaluation(params, task, lp, metrics, out, files)
    log_sampling_params(lp, {**report["chosen"], "repetition_window": report["repetition_window"]})
    m = metrics
    log.info(
        "test perplexity %.1f vs Kneser-Ney (order %d) %.1f (ratio %.2f); bits/char %.3f vs KN %.3f vs char-KN %.3f; "
        "OOV %.1f%%",
        m["test_perplexity"],
        cfg.ngram_order,
        m["kneser_ney_perplexity"],
        m["ratio_to_kneser_ney"],
        m["test_bits_per_char"],
        m["kneser_ney_bits_per_char"],
        m["char_kneser_ney_bits_per_char"],
        100 * m["test_oov_rate"],
    )
    log.info(
        "cached variant (a cache of the recent test text): perplexity %.1f vs Kneser-Ney with cache %.1f "
        "(ratio %.2f); bits/char %.3f",
        m["test_perplexity_with_cache"],
        m["kneser_ney_cache_perplexity"],
        m["ratio_to_kneser_ney_cache"],
        m["test_bits_per_char_with_cache"],
    )
    log.info(
        "generation (%d samples, %s) vs real test lyrics: adjacent repeats %.1f%% vs %.1f%%, top-5 chars %.1f%% vs "
        "%.1f%%, distinct-2 %.2f vs %.2f, 8-char windows from train %.1f%% vs %.1f%%",
        m["generation_samples"],
        ", ".join(f"{k} {v}" for k, v in report["chosen"].items()),
        *(scale * m[f"{side}_{k}"] for k, scale in zip(STATS, (100, 100, 1, 100)) for side in ("generated", "real")),
    )
    return metrics
