"""Tier 1, code: the streaming reviews clean and the streaming vocab count, read in tiny record
batches, give exactly what the in-memory versions give on the whole table."""

import hashlib
import json
import random
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks import vocab as vocab_stage
from tasks.common.errors import PipelineError
from tasks.common.params import section_from_yaml
from tasks.reviews.clean import clean_file, clean_reviews, keep_mask, text_hashes
from tasks.reviews.params import CleanReviews
from tasks.text.vocab import (
    build_vocab,
    extend_from_counts,
    extend_vocab,
    oov_rate,
    oov_rate_of_counts,
    token_counts_by_split,
    tokens_by_split,
    vocab_from_counts,
)

# Duplicates (also ones that only become equal after cleaning: 服務 → 服务, ！！ → !), conflicts,
# empty and missing texts, a review that is only a link, one too short.
TEXTS = [
    "很好",
    "很好",
    "一般般",
    "服務很好",
    "服务很好",
    "一般般",
    "",
    None,
    "http://a.com",
    "x",
    "太差了！！",
    "太差了!",
]
LABELS = [1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0]


def clean_cfg(tmp_path, **kw) -> CleanReviews:
    return section_from_yaml(
        CleanReviews,
        "reviews.clean",
        input=str(tmp_path / "raw.parquet"),
        output=str(tmp_path / "out" / "clean.parquet"),
        report=str(tmp_path / "out" / "clean.json"),
        **kw,
    )


def write_raw(path, texts, labels) -> pa.Table:
    table = pa.table(
        {
            "id": [f"f.csv:{i + 1}" for i in range(len(texts))],
            "source": ["f.csv"] * len(texts),
            "text": pa.array(texts, pa.string()),
            "label": pa.array(labels, pa.int64()),
            "label_name": [str(x) for x in labels],
        }
    )
    pq.write_table(table, path, row_group_size=5)  # row groups that batches cut across
    return table


def random_corpus(rng: random.Random, n: int) -> tuple[list[str], list[int]]:
    """Few distinct texts: most rows are duplicates; the texts that take a random label conflict."""
    fixed = {"房间干净": 1, "服務周到！！！": 1, "服务周到!": 1, "送餐太慢": 0, "<b>不错</b>": 2, "   ": 0, "好": 1}
    rows = [rng.choice([*fixed, "很好", "一般般", "太差了"]) for _ in range(n)]
    return rows, [fixed.get(t, rng.choice([0, 1, 1, 2])) for t in rows]


@pytest.mark.parametrize("batch_rows", [1, 2, 5, 1000])
@pytest.mark.parametrize(
    "switches",
    [{}, {"drop_duplicates": False}, {"drop_conflicts": False}, {"drop_duplicates": False, "drop_conflicts": False}],
)
def test_streaming_clean_equals_in_memory(tmp_path, batch_rows, switches):
    cfg = clean_cfg(tmp_path, **switches)
    for seed, (texts, labels) in enumerate([(TEXTS, LABELS), random_corpus(random.Random(3), 300)]):
        table = write_raw(cfg.input, texts, labels)
        expected, expected_report = clean_reviews(table, cfg, cfg.input)
        rules = expected_report["rules"]  # the corpora have both, for the switches to matter
        assert bool(rules["duplicates"]["dropped"]) == cfg.drop_duplicates
        assert bool(rules["conflicting_labels"]["dropped"]) == cfg.drop_conflicts
        report = clean_file(cfg, batch_rows)
        out = pq.read_table(cfg.output)
        assert out.equals(expected), f"corpus {seed}"
        assert out.schema.equals(expected.schema, check_metadata=True)
        assert report == expected_report
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clean.parquet"]  # no scratch file left


def test_streaming_clean_counts_the_small_corpus(tmp_path):
    cfg = clean_cfg(tmp_path)
    write_raw(cfg.input, TEXTS, LABELS)
    report = clean_file(cfg, 2)
    out = pq.read_table(cfg.output)
    assert out.column("text").to_pylist() == ["很好", "服务很好", "太差了!"]  # 一般般 has two labels
    assert out.column("id").to_pylist() == ["f.csv:1", "f.csv:4", "f.csv:11"]  # the first of each
    assert report["rules"]["conflicting_labels"] == {"changed": 0, "dropped": 2, "texts": 1}
    assert report["rules"]["duplicates"]["dropped"] == 3
    assert report["rules"]["empty"]["dropped"] == 2 and report["rules"]["urls"]["dropped"] == 1
    assert report["rules"]["min_chars"]["dropped"] == 1
    assert report["lines_in"] == 12 and report["lines_out"] == 3 and report["classes"] == {"0": 1, "1": 2}


def test_streaming_clean_with_nothing_left_writes_nothing(tmp_path):
    cfg = clean_cfg(tmp_path)
    write_raw(cfg.input, ["", "x", "http://a.com"], [0, 1, 1])
    with pytest.raises(PipelineError, match="raw.parquet: no reviews left after cleaning") as info:
        clean_file(cfg, 2)
    assert "\n" not in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []  # neither the output nor the scratch file


def test_streaming_clean_missing_input(tmp_path):
    with pytest.raises(PipelineError, match="clean input not found; run the ingest stage first"):
        clean_file(clean_cfg(tmp_path))


def test_text_hashes_are_stable_64_bit():
    hashes = text_hashes(["很好", "很好", "不错"])
    assert hashes.dtype == np.dtype("<u8") and hashes[0] == hashes[1] != hashes[2]
    # blake2b, not the salted hash(): the same in every process and on every machine.
    digest = hashlib.blake2b("很好".encode(), digest_size=8).digest()
    assert int(text_hashes(["很好"])[0]) == int.from_bytes(digest, "little")


def test_keep_mask_empty_and_single():
    assert keep_mask(np.zeros(0, "<u8"), np.zeros(0, np.int32), True, True)[0].tolist() == []
    mask, *counts = keep_mask(np.array([7], "<u8"), np.array([1], np.int32), True, True)
    assert mask.tolist() == [True] and counts == [0, 0, 0]


# --- vocab --------------------------------------------------------------------------------------


def write_split(path, rng: random.Random, n: int) -> None:
    chars = list("天空下雨我你回忆爱好的很不") + ["<unk>", "周杰伦"]
    tokens = [[rng.choice(chars) for _ in range(rng.randint(0, 6))] for _ in range(n)]
    splits = [rng.choice(["train", "train", "train", "val", "test"]) for _ in range(n)]
    table = pa.table(
        {"id": [str(i) for i in range(n)], "tokens": pa.array(tokens, pa.list_(pa.string())), "split": splits}
    )
    pq.write_table(table, path, row_group_size=7)


@pytest.mark.parametrize("batch_rows", [1, 3, 1000])
def test_streaming_counts_equal_in_memory(tmp_path, batch_rows):
    path = tmp_path / "split.parquet"
    write_split(path, random.Random(1), 200)
    lists = tokens_by_split(path)
    counts = token_counts_by_split(path, batch_rows)
    assert counts == {s: Counter(t for tokens in lists[s] for t in tokens) for s in ("train", "val", "test")}
    for min_freq, max_size in [(1, 100), (3, 100), (1, 10)]:
        vocab, _ = build_vocab(lists["train"], min_freq, max_size)
        streamed = vocab_from_counts(counts["train"], min_freq, max_size)
        assert streamed.itos == vocab.itos
        base = ["<pad>", "<unk>", "<bos>", "<eos>", "爱", "雨"]
        extended, _ = extend_vocab(base, lists["train"], min_freq, max_size)
        assert extend_from_counts(base, counts["train"], min_freq, max_size).itos == extended.itos
        for s in ("val", "test"):
            assert oov_rate_of_counts(counts[s], vocab) == oov_rate(lists[s], vocab)


def in_memory_vocab_report(path, min_freq, max_size, base_itos=None) -> dict:
    """What the vocab stage wrote before it streamed: every split's token lists held in memory."""
    splits = tokens_by_split(path)
    if base_itos:
        vocab, counts = extend_vocab(base_itos, splits["train"], min_freq, max_size)
    else:
        vocab, counts = build_vocab(splits["train"], min_freq, max_size)
    train_tokens = sum(counts.values())
    return {
        "size": len(vocab),
        "hash": vocab.hash,
        "train_tokens": train_tokens,
        "train_coverage": sum(counts[t] for t in vocab.itos if t in counts) / max(train_tokens, 1),
        "oov_rate": {s: oov_rate(splits[s], vocab) for s in ("val", "test")},
        "itos": vocab.itos,
        "counts": {t: counts.get(t, 0) for t in vocab.itos},
    }


def vocab_params(tmp_path, **task) -> SimpleNamespace:
    cfg = SimpleNamespace(
        input=str(tmp_path / "split.parquet"), output=str(tmp_path / "vocab.json"), min_freq=2, max_size=12
    )
    return SimpleNamespace(
        reviews=SimpleNamespace(vocab=cfg, tokenize=SimpleNamespace(level="char"), train=SimpleNamespace(), **task)
    )


def test_vocab_stage_streams_the_same_vocab(tmp_path, monkeypatch):
    write_split(tmp_path / "split.parquet", random.Random(2), 300)
    monkeypatch.setattr(vocab_stage, "BATCH_ROWS", 4)
    params = vocab_params(tmp_path)
    vocab_stage.run(params, task="reviews")
    saved = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert saved == in_memory_vocab_report(tmp_path / "split.parquet", 2, 12)


def test_vocab_stage_extends_a_pretrained_base(tmp_path, monkeypatch):
    import tasks.training.base_model as base_model

    base = ["<pad>", "<unk>", "<bos>", "<eos>", "雨", "晴"]
    write_split(tmp_path / "split.parquet", random.Random(4), 300)
    monkeypatch.setattr(vocab_stage, "BATCH_ROWS", 4)
    monkeypatch.setattr(base_model, "load_base", lambda path, level, key: {"itos": base})
    vocab_stage.run(vocab_params(tmp_path, base_model="base.pt"), task="reviews")
    saved = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert saved["itos"][:6] == base
    assert saved == in_memory_vocab_report(tmp_path / "split.parquet", 2, 12, base)
