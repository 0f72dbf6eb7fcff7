"""Tier 2, data: the stratified, seeded review split and its leakage check."""

import numpy as np
import pyarrow as pa
import pytest

from tasks.common.errors import PipelineError
from tasks.common.params import section_from_yaml
from tasks.reviews.params import SplitReviews
from tasks.reviews.split import assert_no_leakage, split_reviews

CFG = section_from_yaml(
    SplitReviews, "reviews.split", input="-", output="-", val_fraction=0.1, test_fraction=0.2, seed=13
)


def table(texts, labels):
    return pa.table(
        {
            "text": texts,
            "label": pa.array(labels, pa.int64()),
            "label_name": [str(x) for x in labels],
            "tokens": [list(t) for t in texts],
        }
    )


def test_stratified_shares_per_class_and_deterministic():
    texts = [f"评论{i}" for i in range(300)]
    labels = [0] * 200 + [1] * 100
    out = split_reviews(table(texts, labels), CFG).column("split").to_pylist()
    arr, lab = np.array(out), np.array(labels)
    for label, n in ((0, 200), (1, 100)):
        assert (arr[lab == label] == "test").sum() == round(n * 0.2)
        assert (arr[lab == label] == "val").sum() == round(n * 0.1)
    assert out == split_reviews(table(texts, labels), CFG).column("split").to_pylist()  # same seed, same split
    other = split_reviews(table(texts, labels), CFG.model_copy(update={"seed": 7})).column("split").to_pylist()
    assert other != out


def test_identical_texts_share_a_split():
    texts = [f"评论{i % 40}" for i in range(120)]  # each text three times (cleaning turned off upstream)
    labels = [i % 40 % 2 for i in range(120)]
    out = split_reviews(table(texts, labels), CFG).column("split").to_pylist()
    by_text: dict[str, set] = {}
    for t, s in zip(texts, out):
        by_text.setdefault(t, set()).add(s)
    assert all(len(s) == 1 for s in by_text.values())


def test_leakage_check_catches_a_text_in_two_splits():
    assert_no_leakage(["a", "b", "a"], ["train", "test", "train"])
    with pytest.raises(PipelineError, match="'a' is in both train and test"):
        assert_no_leakage(["a", "b", "a"], ["train", "val", "test"], "split.parquet")


def test_class_too_small_to_split():
    with pytest.raises(PipelineError, match=r"x.parquet: class '1' has 2 distinct reviews"):
        split_reviews(table(["a", "b", "c", "d", "e"], [0, 0, 0, 1, 1]), CFG, "x.parquet")
