"""Tier 2, data: the stratified review split by a seeded stable hash, its leakage check, and the
stage streaming it batch by batch to the same file."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.common.errors import PipelineError
from tasks.common.params import section_from_yaml
from tasks.reviews.params import SplitReviews
from tasks.reviews.split import assert_no_leakage, split_reviews
from tasks.split import split_codes, split_file, stable_hashes

CFG = section_from_yaml(
    SplitReviews, "reviews.split", input="-", output="-", val_fraction=0.1, test_fraction=0.2, seed=13
)


def table(texts, labels):
    return pa.table(
        {
            "id": [f"r{i}" for i in range(len(texts))],
            "text": texts,
            "label": pa.array(labels, pa.int64()),
            "label_name": [str(x) for x in labels],
            "tokens": [list(t) for t in texts],
        }
    )


def splits_of(tbl: pa.Table, cfg=CFG) -> list[str]:
    return split_reviews(tbl, cfg).column("split").to_pylist()


def split_by_text(tbl: pa.Table, cfg=CFG) -> dict[str, set]:
    by_text: dict[str, set] = {}
    for t, s in zip(tbl.column("text").to_pylist(), splits_of(tbl, cfg)):
        by_text.setdefault(t, set()).add(s)
    return by_text


def test_stable_hash_is_keyed_blake2b_and_never_changes():
    # Pinned: a change here silently reassigns every review of every corpus.
    assert stable_hashes(["天空下雨", "a"], 13).tolist() == [15416355325973293935, 2383907488495536558]
    assert stable_hashes(["天空下雨"], 7).tolist() == [9359589790926577039]
    assert stable_hashes([], 13).dtype == np.uint64


def test_stratified_shares_per_class_and_deterministic():
    texts = [f"评论{i}" for i in range(300)]
    labels = [0] * 200 + [1] * 100
    out = splits_of(table(texts, labels))
    arr, lab = np.array(out), np.array(labels)
    for label, n in ((0, 200), (1, 100)):
        assert (arr[lab == label] == "test").sum() == round(n * 0.2)
        assert (arr[lab == label] == "val").sum() == round(n * 0.1)
    assert out == splits_of(table(texts, labels))  # same seed, same split
    other = splits_of(table(texts, labels), CFG.model_copy(update={"seed": 7}))
    assert other != out


def test_identical_texts_share_a_split():
    texts = [f"评论{i % 40}" for i in range(120)]  # each text three times (cleaning turned off upstream)
    labels = [i % 40 % 2 for i in range(120)]
    assert all(len(s) == 1 for s in split_by_text(table(texts, labels)).values())


def test_texts_differing_only_in_width_case_or_spacing_share_a_split():
    base = [f"review {i} good" for i in range(60)]
    variants = [f"ＲＥＶＩＥＷ  {i}\tGood " for i in range(60)]  # full-width, upper case, other spaces
    out = splits_of(table(base + variants, [i % 2 for i in range(60)] * 2))
    assert out[:60] == out[60:]


def test_the_split_does_not_depend_on_row_order():
    texts = [f"评论{i}" for i in range(200)]
    labels = [i % 3 for i in range(200)]
    first = dict(zip(texts, splits_of(table(texts, labels))))
    order = np.random.default_rng(0).permutation(200)
    shuffled = table([texts[i] for i in order], [labels[i] for i in order])
    assert dict(zip(shuffled.column("text").to_pylist(), splits_of(shuffled))) == first


def test_more_reviews_of_one_class_move_none_of_another():
    texts = [f"好评{i}" for i in range(100)] + [f"差评{i}" for i in range(100)]
    labels = [1] * 100 + [0] * 100
    first = splits_of(table(texts, labels))
    more = splits_of(table(texts + [f"差评{i}" for i in range(100, 300)], labels + [0] * 200))
    assert more[:100] == first[:100]  # class 1's cuts depend on class 1's texts only


def test_a_text_with_two_labels_lands_in_one_split_and_counts_for_its_smaller_label():
    # clean's drop_conflicts off: every 5th text occurs once as class 0 and once as class 1
    texts = [f"评论{i}" for i in range(100)] + [f"评论{i}" for i in range(0, 100, 5)]
    labels = [0] * 50 + [1] * 50 + [1 if i < 50 else 0 for i in range(0, 100, 5)]
    tbl = table(texts, labels)
    assert all(len(s) == 1 for s in split_by_text(tbl).values())
    out = np.array(splits_of(tbl))
    for label in (0, 1):
        assert {"train", "val", "test"} <= set(out[np.array(labels) == label])


def test_three_distinct_reviews_per_class_give_one_to_each_split():
    out = splits_of(table(["a", "b", "c", "d", "e", "f"], [0, 0, 0, 1, 1, 1]))
    assert sorted(out[:3]) == sorted(out[3:]) == ["test", "train", "val"]


def test_leakage_check_catches_a_text_in_two_splits():
    hashes = stable_hashes(["a", "b", "a"], 13)
    assert_no_leakage(hashes, split_codes(pa.array(["train", "test", "train"])))
    with pytest.raises(PipelineError, match="split.parquet: rows 0 and 2 hold the same text but are in train and test"):
        assert_no_leakage(hashes, split_codes(pa.array(["train", "val", "test"])), "split.parquet")


def test_class_too_small_to_split():
    with pytest.raises(PipelineError, match=r"x.parquet: class '1' has 2 distinct reviews"):
        split_reviews(table(["a", "b", "c", "d", "e"], [0, 0, 0, 1, 1]), CFG, "x.parquet")
    # Copies are one review: five rows of two texts are still too few
    with pytest.raises(PipelineError, match=r"class '1' has 2 distinct reviews"):
        split_reviews(table(["a", "b", "c", "d", "e", "d", "E "], [0, 0, 0, 1, 1, 1, 1]), CFG, "x.parquet")


def test_one_class_left():
    with pytest.raises(PipelineError, match=r"x.parquet: only class '0' is left after cleaning"):
        split_reviews(table(["a", "b", "c"], [0, 0, 0]), CFG, "x.parquet")


# --- the stage: two streaming passes ------------------------------------------------------------


@pytest.fixture
def tokens_file(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.choice([0, 1, 2], size=1000, p=[0.6, 0.3, 0.1]).tolist()
    texts = [f"评论{i // 2 if i % 7 == 0 else i}" for i in range(1000)]  # some texts twice
    path = tmp_path / "tokens.parquet"
    pq.write_table(table(texts, labels), path, row_group_size=300)
    return path


def test_stage_gives_the_same_file_batched_or_whole(tokens_file, tmp_path):
    whole = split_file("reviews", CFG, tokens_file, tmp_path / "whole.parquet", batch_rows=1_000_000)
    batched = split_file("reviews", CFG, tokens_file, tmp_path / "batched.parquet", batch_rows=7)
    assert whole == batched
    out = pq.read_table(tmp_path / "batched.parquet")
    assert out.equals(pq.read_table(tmp_path / "whole.parquet"))
    assert out.equals(split_reviews(pq.read_table(tokens_file), CFG))  # and as the in-memory split
    assert out.column_names == ["id", "text", "label", "label_name", "tokens", "split"]
    assert whole["rows"] == {s: out.column("split").to_pylist().count(s) for s in ("train", "val", "test")}


def test_stage_reports_class_shares_close_in_every_split(tokens_file, tmp_path):
    summary = split_file("reviews", CFG, tokens_file, tmp_path / "split.parquet", batch_rows=64)
    labels = pq.read_table(tokens_file).column("label").to_numpy()
    overall = {str(c): float((labels == c).mean()) for c in (0, 1, 2)}
    for shares in summary["class_shares"].values():
        assert shares.keys() == overall.keys()
        assert all(abs(shares[c] - overall[c]) < 0.05 for c in overall)


def test_stage_writes_nothing_when_the_split_leaks(tokens_file, tmp_path, monkeypatch):
    from tasks.reviews import split as reviews_split

    # A broken assignment (random per row) must be caught on the written result, before the file appears.
    monkeypatch.setattr(
        reviews_split,
        "assign_splits",
        lambda hashes, labels, plan: np.random.default_rng(0).integers(0, 3, len(hashes)).astype(np.uint8),
    )
    with pytest.raises(PipelineError, match="the split leaks"):
        split_file("reviews", CFG, tokens_file, tmp_path / "split.parquet", batch_rows=64)
    assert not (tmp_path / "split.parquet").exists()
    assert not any(p.name.startswith(".split.parquet") for p in tmp_path.iterdir())


def test_stage_error_on_too_few_reviews_writes_nothing(tmp_path):
    path = tmp_path / "tokens.parquet"
    pq.write_table(table(["a", "b", "c", "d", "e"], [0, 0, 0, 1, 1]), path)
    with pytest.raises(PipelineError, match=rf"{path}: class '1' has 2 distinct reviews"):
        split_file("reviews", CFG, path, tmp_path / "split.parquet", batch_rows=2)
    assert not (tmp_path / "split.parquet").exists()
