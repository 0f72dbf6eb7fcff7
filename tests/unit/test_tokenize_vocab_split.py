"""Segmentation (jieba words / characters), the group-wise split, and the vocabulary."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tasks.common.errors import PipelineError
from tasks.common.params import section_from_yaml
from tasks.common.sections import Tokenize
from tasks.lyrics.params import Split
from tasks.lyrics.split import group_keys, split_by_group, split_groups
from tasks.text.segment import segment, tokenize_table
from tasks.text.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab, build_vocab, load_vocab, oov_rate

# --- tokenize -----------------------------------------------------------------------------------


def test_word_level_uses_jieba_words():
    assert segment("我爱你 天空下雨", "word") == ["我爱你", "天空", "下雨"]


def test_char_level_splits_chinese_but_keeps_latin_words_whole():
    assert segment("baby 我爱你", "char") == ["baby", "我", "爱", "你"]
    assert segment("I love you  天空", "char") == ["I", "love", "you", "天", "空"]
    assert segment("don't 123 说", "char") == ["don't", "123", "说"]


@pytest.mark.parametrize("level", ["word", "char"])
def test_no_whitespace_tokens(level):
    tokens = segment("  我爱你 \t baby   天空  下雨 ", level)
    assert tokens
    assert all(t.strip() == t and t for t in tokens)


def test_user_dict_changes_segmentation(tmp_path):
    text = "我爱蓝天鱼仔和你"
    assert "蓝天鱼仔" not in segment(text, "word")
    user_dict = tmp_path / "user_dict.txt"
    user_dict.write_text("蓝天鱼仔 100 n\n", encoding="utf-8")
    assert segment(text, "word", user_dict=str(user_dict)) == ["我", "爱", "蓝天鱼仔", "和", "你"]
    # a private tokenizer: the default segmentation is unchanged afterwards
    assert "蓝天鱼仔" not in segment(text, "word")


def test_missing_user_dict_is_a_pipeline_error(tmp_path):
    with pytest.raises(PipelineError, match="user dictionary not found"):
        segment("我爱你", "word", user_dict=str(tmp_path / "nope.txt"))


def tok_cfg(**kw) -> Tokenize:
    return section_from_yaml(
        Tokenize,
        "lyrics.tokenize",
        **{"input": "in.parquet", "output": "out.parquet", "hmm": True, "user_dict": None, **kw},
    )


@pytest.mark.parametrize("level", ["word", "char"])
def test_tokenize_table_schema(level):
    table = pa.table(
        {
            "id": ["s.txt:1", "s.txt:2"],
            "source": ["s.txt", "s.txt"],
            "line_no": pa.array([1, 2], pa.int32()),
            "text": ["我爱你 baby", "天空下雨"],
        }
    )
    out = tokenize_table(table, tok_cfg(level=level))
    assert out.schema.field("tokens").type == pa.list_(pa.string())
    assert out.column_names == ["id", "source", "line_no", "tokens"]
    assert out.column("id").to_pylist() == ["s.txt:1", "s.txt:2"]
    tokens = out.column("tokens").to_pylist()
    if level == "char":
        assert tokens == [["我", "爱", "你", "baby"], ["天", "空", "下", "雨"]]
    else:
        assert tokens == [["我爱你", "baby"], ["天空", "下雨"]]


# --- split --------------------------------------------------------------------------------------


def split_cfg(**kw) -> Split:
    values = dict(
        input="in.parquet", output="out.parquet", block_lines=40, val_fraction=0.1, test_fraction=0.1, seed=13
    )
    return section_from_yaml(Split, "lyrics.split", **{**values, **kw})


def songs_table(n_songs: int, lines_per_song: int) -> pa.Table:
    sources = [f"song{i:02d}.txt" for i in range(n_songs) for _ in range(lines_per_song)]
    return pa.table({"source": sources, "tokens": [["我", "爱", f"w{i}"] for i in range(len(sources))]})


def test_val_and_test_lines_repeating_a_train_line_are_dropped():
    table = songs_table(20, 5)
    tokens = table.column("tokens").to_pylist()
    tokens[:5] = [["副歌", "重复"]] * 5  # every song opens with the same chorus line
    for i in range(5, len(tokens), 5):
        tokens[i] = ["副歌", "重复"]
    table = table.set_column(1, "tokens", pa.array(tokens, pa.list_(pa.string())))
    out = split_by_group(table, split_cfg(seed=13))
    rows = list(zip(out.column("tokens").to_pylist(), out.column("split").to_pylist()))
    assert any(t == ["副歌", "重复"] and s == "train" for t, s in rows)
    assert not any(t == ["副歌", "重复"] and s != "train" for t, s in rows)
    assert {s for _, s in rows} == {"train", "val", "test"}
    assert len(rows) < table.num_rows


def test_group_keys_one_group_per_file_else_blocks():
    assert group_keys(["a", "a", "b", "c", "c"], 2) == ["a", "a", "b", "c", "c"]
    assert group_keys(["a"] * 7, 3) == ["a#0"] * 3 + ["a#1"] * 3 + ["a#2"]


def test_split_is_deterministic_for_a_seed():
    table = songs_table(20, 5)
    first = split_by_group(table, split_cfg(seed=3)).column("split").to_pylist()
    again = split_by_group(table, split_cfg(seed=3)).column("split").to_pylist()
    assert first == again
    others = [split_by_group(table, split_cfg(seed=s)).column("split").to_pylist() for s in range(4, 10)]
    assert any(o != first for o in others)  # the seed does matter


def test_songs_never_span_splits_and_all_splits_are_used():
    table = split_by_group(songs_table(20, 5), split_cfg(seed=13))
    labels_by_song: dict[str, set] = {}
    for source, label in zip(table.column("source").to_pylist(), table.column("split").to_pylist()):
        labels_by_song.setdefault(source, set()).add(label)
    assert all(len(labels) == 1 for labels in labels_by_song.values())
    assert {next(iter(v)) for v in labels_by_song.values()} == {"train", "val", "test"}
    labels = table.column("split").to_pylist()
    assert labels.count("train") > labels.count("val") > 0
    assert labels.count("test") > 0


def test_single_file_splits_in_contiguous_blocks():
    block = 4
    table = pa.table({"source": ["one.txt"] * 50, "tokens": [["天", f"空{i}"] for i in range(50)]})
    labels = split_by_group(table, split_cfg(block_lines=block)).column("split").to_pylist()
    for start in range(0, len(labels), block):
        assert len(set(labels[start : start + block])) == 1, f"block at line {start} spans splits"
    assert set(labels) == {"train", "val", "test"}


def test_split_groups_fills_test_and_val_near_their_fractions():
    groups = np.repeat(np.arange(50), 4)  # 50 groups of 4 lines
    labels = split_groups(groups, 0.1, 0.2, seed=0)
    assert (labels == "test").sum() == 40  # 0.2 * 200
    assert (labels == "val").sum() == 20
    assert (labels == "train").sum() == 140


@pytest.mark.parametrize(
    "table",
    [
        songs_table(2, 10),  # two songs
        pa.table({"source": ["one.txt"] * 10, "tokens": [["天"]] * 10}),  # one file, 2 blocks of 8
    ],
    ids=["two-songs", "one-short-file"],
)
def test_too_small_corpus_raises(table):
    with pytest.raises(PipelineError, match="corpus too small to split"):
        split_by_group(table, split_cfg(block_lines=8), "tokens.parquet")


def test_split_with_an_empty_split_raises():
    # one big song and two one-liners: whatever the order, the big one fills test or val and
    # leaves some split without lines; that is a clear error, not an empty split
    table = pa.table({"source": ["a"] + ["b"] + ["c"] * 100, "tokens": [["天"]] * 102})
    for seed in range(5):
        with pytest.raises(PipelineError, match="no lines for"):
            split_by_group(table, split_cfg(seed=seed), "tokens.parquet")


def test_songs_keep_their_split_whatever_the_row_order_and_the_other_songs():
    table = songs_table(20, 5)
    first = dict(
        zip(table.column("source").to_pylist(), split_by_group(table, split_cfg()).column("split").to_pylist())
    )
    shuffled = table.take(np.random.default_rng(0).permutation(table.num_rows))
    out = split_by_group(shuffled, split_cfg())
    assert dict(zip(out.column("source").to_pylist(), out.column("split").to_pylist())) == first
    # A song's place in the hash order is its own: dropping a train song (the test/val line goals
    # still met by the same songs) moves no other song
    train_song = next(s for s, label in first.items() if label == "train")
    fewer = table.filter(pc.not_equal(table.column("source"), train_song))
    out = split_by_group(fewer, split_cfg())
    assert dict(zip(out.column("source").to_pylist(), out.column("split").to_pylist())) == {
        s: label for s, label in first.items() if s != train_song
    }


def test_split_stage_run(tiny_params):
    from tasks import clean, split, tokenize

    clean.run(tiny_params)
    tokenize.run(tiny_params)
    summary = split.run(tiny_params)
    counts = summary["rows"]
    assert set(counts) == {"train", "val", "test"} and all(c > 0 for c in counts.values())
    table = pq.read_table(tiny_params.lyrics.split.output)
    assert sum(counts.values()) == table.num_rows
    per_song = {}
    for source, label in zip(table.column("source").to_pylist(), table.column("split").to_pylist()):
        per_song.setdefault(source, set()).add(label)
    assert all(len(v) == 1 for v in per_song.values())


def test_split_stage_streams_to_the_same_file_in_any_batch_size(tiny_params, tmp_path):
    from tasks import clean, split, tokenize

    clean.run(tiny_params)
    tokenize.run(tiny_params)
    cfg = tiny_params.lyrics.split
    whole = split.split_file("lyrics", cfg, cfg.input, tmp_path / "whole.parquet", batch_rows=1_000_000)
    batched = split.split_file("lyrics", cfg, cfg.input, tmp_path / "batched.parquet", batch_rows=7)
    assert whole == batched
    assert pq.read_table(tmp_path / "whole.parquet").equals(pq.read_table(tmp_path / "batched.parquet"))
    in_memory = split_by_group(pq.read_table(cfg.input), cfg, cfg.input)
    assert pq.read_table(tmp_path / "batched.parquet").equals(in_memory)
    # the corpus the clean stage recorded travels on, for the later stages' errors
    assert pq.read_schema(tmp_path / "batched.parquet").metadata == pq.read_schema(cfg.input).metadata


# --- vocab --------------------------------------------------------------------------------------

CORPUS = [["天空", "下雨", "天空"], ["我", "爱", "你", "天空"], ["下雨", "我"], ["回忆"]]
# counts: 天空 3, 下雨 2, 我 2, 你 1, 回忆 1, 爱 1


def test_specials_have_fixed_ids():
    vocab, _ = build_vocab(CORPUS, min_freq=1, max_size=100)
    assert SPECIALS == [PAD, UNK, BOS, EOS] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert [vocab.stoi[s] for s in SPECIALS] == [0, 1, 2, 3]
    # a corpus that contains a special's spelling still keeps it at its fixed id, once
    vocab, _ = build_vocab([["<unk>", "<eos>", "天空"]], 1, 100)
    assert vocab.itos == SPECIALS + ["天空"]


def test_ordering_by_count_then_token_and_deterministic():
    vocab, counts = build_vocab(CORPUS, min_freq=1, max_size=100)
    assert vocab.itos[4:] == ["天空", "下雨", "我", "你", "回忆", "爱"]
    assert counts["天空"] == 3
    shuffled = [list(reversed(t)) for t in reversed(CORPUS)]
    again, _ = build_vocab(shuffled, min_freq=1, max_size=100)
    assert again.itos == vocab.itos and again.hash == vocab.hash


def test_min_freq():
    vocab, _ = build_vocab(CORPUS, min_freq=2, max_size=100)
    assert vocab.itos == SPECIALS + ["天空", "下雨", "我"]


def test_max_size_counts_the_specials():
    vocab, _ = build_vocab(CORPUS, min_freq=1, max_size=6)
    assert len(vocab) == 6
    assert vocab.itos == SPECIALS + ["天空", "下雨"]


def test_encode_decode_and_unknown():
    vocab, _ = build_vocab(CORPUS, min_freq=1, max_size=100)
    ids = vocab.encode(["天空", "没见过", "我"])
    assert ids == [4, 1, 6]
    assert vocab.decode(ids) == ["天空", UNK, "我"]


def test_oov_rate():
    vocab, _ = build_vocab(CORPUS, min_freq=2, max_size=100)
    assert oov_rate([["天空", "你"], ["回忆", "下雨"]], vocab) == 0.5
    assert oov_rate([["天空"]], vocab) == 0.0
    assert oov_rate([], vocab) == 0.0


def test_vocab_stage_run(tiny_params):
    from tasks import clean, split, tokenize, vocab

    for stage in (clean, tokenize, split):
        stage.run(tiny_params)
    tiny_params.lyrics.vocab.min_freq = 1
    report = vocab.run(tiny_params)
    saved = json.loads(open(tiny_params.lyrics.vocab.output, encoding="utf-8").read())
    loaded = load_vocab(tiny_params.lyrics.vocab.output)
    assert isinstance(loaded, Vocab)
    assert loaded.itos[:4] == SPECIALS
    assert report["size"] == len(loaded) == len(saved["itos"])
    assert report["hash"] == loaded.hash
    assert set(report["oov_rate"]) == {"val", "test"}
    assert report["train_coverage"] == pytest.approx(1.0)  # min_freq 1: every train token is in

    tiny_params.lyrics.vocab.min_freq = 1000  # nothing is that frequent: only the specials are left
    report = vocab.run(tiny_params)
    assert load_vocab(tiny_params.lyrics.vocab.output).itos == SPECIALS
    assert report["train_coverage"] == 0.0
