"""The language model's parts of its model card (tasks/common/model_card.py): what the model is, its
data, test perplexity and bits per character beside the Kneser-Ney baselines', a few generated
samples with the generation statistics against real lyrics, and its limits (OOV, repeats, domain).
Every row comes from a key metrics.json has; a missing key leaves its row (or cell) out."""

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import torch

from tasks.common.model_card import (
    TaskCard,
    checkpoint_facts,
    data_facts,
    metric_rows,
    number,
    percent,
    split_sizes,
    table,
)

PERPLEXITY = [
    ("perplexity, model alone", "test_perplexity", "kneser_ney_perplexity"),
    ("ratio to Kneser-Ney, model alone", "ratio_to_kneser_ney", None),
    ("bits per character", "test_bits_per_char", "kneser_ney_bits_per_char"),
    ("bits per character, character-level Kneser-Ney", None, "char_kneser_ney_bits_per_char"),
    ("perplexity with a test-time cache (both sides)", "test_perplexity_with_cache", "kneser_ney_cache_perplexity"),
    ("ratio to Kneser-Ney, both with a cache", "ratio_to_kneser_ney_cache", None),
    ("bits per character with a cache", "test_bits_per_char_with_cache", "kneser_ney_cache_bits_per_char"),
]
GENERATION = [
    ("adjacent repeat rate", "generated_adjacent_repeat_rate", "real_adjacent_repeat_rate"),
    ("top-5 character share", "generated_top5_char_share", "real_top5_char_share"),
    ("distinct character bigrams (distinct-2)", "generated_distinct_2", "real_distinct_2"),
    ("8-character windows found in train", "generated_train_8gram_rate", "real_train_8gram_rate"),
]
SAMPLES_SHOWN, SAMPLE_CHARS = 3, 300  # the card stays well inside the registry's description limit


def current_names(metrics: dict) -> dict:
    """metrics.json as written before the headline became the model alone (`test_perplexity` then
    counted the cache; the model alone was `test_perplexity_without_cache`), in today's names."""
    if "test_perplexity_without_cache" not in metrics:
        return metrics
    m = {k: v for k, v in metrics.items() if k not in ("test_perplexity_without_cache", "ratio_to_kneser_ney")}
    m["test_perplexity"] = metrics["test_perplexity_without_cache"]
    m["test_perplexity_with_cache"] = metrics["test_perplexity"]
    if metrics.get("kneser_ney_perplexity"):
        m["ratio_to_kneser_ney"] = m["test_perplexity"] / metrics["kneser_ney_perplexity"]
    return m


def sample_blocks(samples_md: str, n: int = SAMPLES_SHOWN) -> list[tuple[str, str]]:
    """The first n `## <start>` blocks of samples.md as (start, text)."""
    blocks = re.split(r"^## ", samples_md, flags=re.MULTILINE)[1:]
    return [(head.strip(), body.strip()) for head, _, body in (b.partition("\n") for b in blocks[:n])]


def generation_section(metrics: dict, samples: list[tuple[str, str]]) -> str:
    """Generation statistics of samples beside real held-out lyrics, the chosen sampling, a few samples."""
    parts = []
    rows = metric_rows(metrics, GENERATION)
    if rows:
        parts.append(table(["statistic", "generated", "real test lyrics"], [list(r) for r in rows]))
    sampling = {k.removeprefix("sampling."): v for k, v in metrics.items() if k.startswith("sampling.")}
    if sampling:
        parts.append("Sampling chosen on validation: " + ", ".join(f"{k} {v}" for k, v in sampling.items()) + ".\n")
    for start, text in samples:
        cut = text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "…"
        parts.append(f"**{start}**\n\n```text\n{cut}\n```\n")
    return "\n".join(parts)


def limits(metrics: dict, corpus: str, train_tokens) -> list[str]:
    """What the scores do not say: unknown words, test lines seen in training, the cache, the domain."""
    out = []
    if "test_oov_rate" in metrics:
        out.append(
            f"{percent(metrics['test_oov_rate'])} of the test tokens are outside the vocabulary and count as "
            "`<unk>` in the perplexities (the baseline uses the same vocabulary)."
        )
    if "test_lines_seen_in_train" in metrics:
        out.append(
            f"{percent(metrics['test_lines_seen_in_train'])} of the test lines also occur in train (repeated "
            "choruses and songs): memorisable, which favours the n-gram baseline."
        )
    if metrics.get("cache_lambda"):
        out.append(
            f"The cached figures mix in a cache of the recent test text (lambda {metrics['cache_lambda']}, fitted "
            "on validation), which gains because songs repeat their own lines; generation never uses it."
        )
    out.append(
        f"Trained on {corpus} ({number(train_tokens)} training tokens): it writes in that corpus's style and "
        "vocabulary; a start word it does not know falls back to its known characters."
    )
    return out


def model_facts(ckpt: dict, pretrained_base) -> dict[str, str]:
    args = ckpt["model_args"]
    layers = f"{args['num_layers']} layer" + "s" * (args["num_layers"] > 1)
    output = "adaptive softmax" if args.get("output") == "adaptive" else "full softmax"
    tied = ", tied input/output embeddings" if args.get("tie_weights") else ""
    facts = {
        "architecture": f"{args['cell'].upper()} language model, {layers}, hidden {args['hidden_size']}, "
        f"embedding {args['embedding_size']}{tied}, {output}, dropout {args['dropout']}",
        "input → output": "start words (segmented as in training) → lyrics; sampling settings per call",
    }
    if ckpt.get("cache"):
        cache = ckpt["cache"]
        facts["continuous cache"] = (
            f"theta {cache.get('theta')}, lambda {cache.get('lam')}, window {cache.get('window')}: "
            "fitted on validation, used only where the model scores given text"
        )
    return facts | checkpoint_facts(ckpt, "val_loss", lower_is_better=True, pretrained_base=pretrained_base)


def card(tp, metrics: dict, checkpoint: str) -> TaskCard:
    """The lyrics task's parts of the model card, from the checkpoint, metrics.json, samples.md and the data reports."""
    m = current_names(metrics)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    vocab_report = json.loads(Path(tp.vocab.output).read_text(encoding="utf-8"))
    clean_report = json.loads(Path(tp.clean.report).read_text(encoding="utf-8"))
    splits = split_sizes(pq.read_table(tp.split.output, columns=["split"]).column("split").to_pylist())
    samples_md = Path(tp.evaluate.output_dir) / "samples.md"
    samples = sample_blocks(samples_md.read_text(encoding="utf-8")) if samples_md.exists() else []
    trained_from = ckpt.get("params", {}).get("base_model")  # the params of the training, not today's
    base = m.get("pretrained_base") or (trained_from and f"`{trained_from}`")
    corpus = f"`{tp.corpus}`"
    return TaskCard(
        summary=f"Chinese lyrics language model: a {ckpt['model_args']['cell'].upper()} that continues start words "
        f"into lyrics, one {'character' if ckpt.get('tokenizer', {}).get('level') == 'char' else 'word'} at a time.",
        model=model_facts(ckpt, base),
        data=data_facts(corpus, "lines", clean_report, splits, vocab_report),
        baseline=f"interpolated Kneser-Ney (order {tp.evaluate.ngram_order}) fitted on the same train split",
        metrics=metric_rows(m, PERPLEXITY),
        sections=[("Generation", generation_section(m, samples))] if samples or "generated_distinct_2" in m else [],
        limits=limits(m, corpus, vocab_report.get("train_tokens")),
    )
