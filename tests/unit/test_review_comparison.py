"""The review evaluation's comparison metrics on hand-checked cases: McNemar's exact test, the
expected calibration error and reliability bins, the length slices, per-class scores."""

import numpy as np
import pytest

from tasks.reviews.calibration import expected_calibration_error, reliability_bins
from tasks.reviews.comparison import length_edges, length_slices, mcnemar_test
from tasks.reviews.evaluate import per_class


def test_mcnemar_counts_the_reviews_only_one_model_gets_right():
    y = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    model = np.array([0, 1, 1, 0, 1, 0, 0, 1])  # wrong on row 6
    baseline = np.array([1, 0, 1, 0, 0, 0, 1, 1])  # wrong on rows 0, 1, 4
    out = mcnemar_test(y, model, baseline)
    assert out["only_model_right"] == 3 and out["only_baseline_right"] == 1
    # two-sided exact binomial, 3 of 4 discordant: 2 * P(X <= 1 | n=4, p=1/2) = 2 * 5/16
    assert out["p_value"] == pytest.approx(0.625)
    assert mcnemar_test(y, model, model)["p_value"] == 1.0  # no discordant review: no evidence either way


def test_mcnemar_is_significant_when_one_model_wins_most_disagreements():
    y = np.ones(40, dtype=int)
    model, baseline = y.copy(), y.copy()
    baseline[:12] = 0  # 12 reviews only the model gets right, none the other way
    assert mcnemar_test(y, model, baseline)["p_value"] == pytest.approx(2 * 0.5**12)


def test_expected_calibration_error_and_reliability_bins_by_hand():
    y = np.array([0, 1, 1])
    probs = np.array([[0.95, 0.05], [0.25, 0.75], [0.65, 0.35]], dtype=np.float32)
    # confidences 0.95 (right), 0.75 (right), 0.65 (wrong), one bin each: (0.05 + 0.25 + 0.65) / 3
    assert expected_calibration_error(y, probs) == pytest.approx(0.95 / 3, abs=1e-6)
    bins = reliability_bins(y, probs)
    assert [b["reviews"] for b in bins] == [1, 1, 1]
    assert [b["accuracy"] for b in bins] == [0.0, 1.0, 1.0]
    assert [b["confidence"] for b in bins] == pytest.approx([0.65, 0.75, 0.95])
    assert expected_calibration_error(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)) == 0.0


def test_length_slices_use_the_train_splits_terciles_and_score_each_model():
    edges = length_edges(np.arange(1, 10))  # train lengths 1..9: terciles at 11/3 and 19/3
    assert edges == pytest.approx((11 / 3, 19 / 3))
    lengths = np.array([2, 3, 5, 6, 8, 20])
    y = np.array([0, 1, 0, 1, 0, 1])
    rows = length_slices(lengths, edges, y, {"test": y, "baseline": 1 - y})
    assert [(r["slice"], r["reviews"]) for r in rows] == [("short", 2), ("medium", 2), ("long", 2)]
    assert all(r["test_accuracy"] == 1.0 and r["baseline_accuracy"] == 0.0 for r in rows)


def test_per_class_scores_name_every_class():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    scores = per_class(y, probs, ["neg", "pos"])
    assert scores["neg"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert scores["pos"]["precision"] == pytest.approx(2 / 3) and scores["pos"]["recall"] == 1.0
