"""Bad input and bad params: every stage exits 2 with ONE `error:` line naming the file or key, no
traceback, and writes no output."""

from pathlib import Path

import pytest
import yaml

from tests.helpers import assert_one_line_error, run_stage, tiny_params_dict, write_lyrics_params


def clean_outputs(tmp_path: Path) -> list[Path]:
    return [tmp_path / "data" / "clean.parquet", tmp_path / "reports" / "clean.json"]


# --- the corpus ---------------------------------------------------------------------------------


def test_missing_corpus(tmp_path):
    missing = tmp_path / "no_such_lyrics"
    line = assert_one_line_error(run_stage("clean", write_lyrics_params(tmp_path, missing)), str(missing))
    assert "no lyrics corpus" in line
    assert not any(p.exists() for p in clean_outputs(tmp_path))


def test_folder_without_lyric_files(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    assert_one_line_error(run_stage("clean", write_lyrics_params(tmp_path, folder)), str(folder))
    assert not any(p.exists() for p in clean_outputs(tmp_path))


@pytest.mark.parametrize("content", [b"", b"  \n\n \r\n"], ids=["empty", "blank"])
def test_empty_file(tmp_path, content):
    corpus = tmp_path / "lyrics.txt"
    corpus.write_bytes(content)
    line = assert_one_line_error(run_stage("clean", write_lyrics_params(tmp_path, corpus)), str(corpus))
    assert "empty" in line
    assert not any(p.exists() for p in clean_outputs(tmp_path))


def clean_texts(tmp_path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return pq.read_table(tmp_path / "data" / "clean.parquet").column("text").to_pylist()


def test_gbk_file_is_read(tmp_path):
    # GBK/GB18030 Chinese is recognised (charset-normalizer is confident and the text is CJK): read, not refused.
    lines = ["我爱你", "天空下雨", "回忆离开"]
    corpus = tmp_path / "lyrics.txt"
    corpus.write_bytes(b"".join(line.encode("gbk") + b"\n" for line in lines * 5))
    result = run_stage("clean", write_lyrics_params(tmp_path, corpus))
    assert result.returncode == 0, result.stderr
    assert clean_texts(tmp_path) == lines * 5


@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])  # Python writes the byte-order mark for these
def test_utf16_and_utf32_files_with_a_bom_are_read(tmp_path, codec):
    lines = ["我爱你", "天空下雨", "回忆离开"]
    corpus = tmp_path / "lyrics.txt"
    corpus.write_bytes("\n".join(lines).encode(codec))
    result = run_stage("clean", write_lyrics_params(tmp_path, corpus))
    assert result.returncode == 0, result.stderr
    assert clean_texts(tmp_path) == lines


def test_one_bad_file_in_a_folder_names_that_file(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "good.txt").write_text("我爱你\n天空下雨\n", encoding="utf-8")
    bad = folder / "bad.lrc"
    bad.write_bytes("[00:01.00]我爱你\n".encode("gbk"))  # too short to tell GBK from Big5
    line = assert_one_line_error(run_stage("clean", write_lyrics_params(tmp_path, folder)), str(bad))
    assert "could not determine the encoding" in line and "re-save it as UTF-8" in line
    assert not any(p.exists() for p in clean_outputs(tmp_path))


def test_random_bytes_are_never_called_gbk(tmp_path):
    import random

    corpus = tmp_path / "lyrics.txt"
    rng = random.Random(0)
    corpus.write_bytes(bytes(rng.choices(range(0x81, 0xFF), k=200_000)))  # decodes as GB18030, means nothing
    line = assert_one_line_error(run_stage("clean", write_lyrics_params(tmp_path, corpus)), str(corpus))
    assert "could not determine the encoding" in line and "GBK" not in line
    assert not any(p.exists() for p in clean_outputs(tmp_path))


def test_binary_file(tmp_path):
    corpus = tmp_path / "lyrics.txt"
    corpus.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    line = assert_one_line_error(run_stage("clean", write_lyrics_params(tmp_path, corpus)), str(corpus))
    assert "binary" in line
    assert not any(p.exists() for p in clean_outputs(tmp_path))


def test_nothing_left_after_cleaning(tmp_path):
    corpus = tmp_path / "credits.txt"
    corpus.write_text("作词：方文山\n作曲：周杰伦\n[ar:周杰伦]\n", encoding="utf-8")
    line = assert_one_line_error(run_stage("clean", write_lyrics_params(tmp_path, corpus)), str(corpus))
    assert "no usable lyric lines left" in line
    assert not any(p.exists() for p in clean_outputs(tmp_path))


def test_punctuation_only_corpus_fails_at_clean_naming_the_corpus(tmp_path):
    corpus = tmp_path / "raw"
    corpus.mkdir()
    (corpus / "song.txt").write_text("！！！\n。。。\n~~~\n123\n" * 50, encoding="utf-8")
    line = assert_one_line_error(run_stage("clean", write_lyrics_params(tmp_path, corpus)), str(corpus))
    assert "no usable lyric lines left" in line and "no_words" in line
    assert not any(p.exists() for p in clean_outputs(tmp_path))


def test_corpus_too_small_to_split(tmp_path):
    from tasks import clean, tokenize
    from tasks.common.params import load_params

    corpus = tmp_path / "lyrics.txt"
    corpus.write_text("\n".join(f"天空下雨第{i}行" for i in range(12)) + "\n", encoding="utf-8")  # 2 blocks of 8
    params_file = write_lyrics_params(tmp_path, corpus)
    params = load_params(params_file)
    clean.run(params)
    tokenize.run(params)
    tokens = Path(params.lyrics.split.input)
    assert tokens.exists()
    # The user's input is named, not the intermediate file, with how much text a split needs.
    line = assert_one_line_error(run_stage("split", params_file), f"error: {corpus}: ", "block_lines")
    assert str(tokens) not in line
    assert "too small to split" in line and "12 usable lines" in line and "17 usable lines" in line
    assert not Path(params.lyrics.split.output).exists()


def test_two_song_files_are_too_few_to_split(tmp_path):
    from tasks import clean, tokenize
    from tasks.common.params import load_params

    corpus = tmp_path / "raw"
    corpus.mkdir()
    for i in range(2):
        (corpus / f"song{i}.txt").write_text("\n".join(f"天空下雨第{j}行" for j in range(30)), encoding="utf-8")
    params_file = write_lyrics_params(tmp_path, corpus)
    params = load_params(params_file)
    clean.run(params)
    tokenize.run(params)
    line = assert_one_line_error(run_stage("split", params_file), f"error: {corpus}: ", "2 song files")
    assert "at least 3 song files" in line
    assert not Path(params.lyrics.split.output).exists()


def test_corpus_too_small_for_batch_size_x_bptt(tiny_params_file, tmp_path):
    from tasks import clean, split, tokenize, vocab
    from tasks.common.params import load_params

    params = load_params(tiny_params_file)
    for stage in (clean, tokenize, split, vocab):
        stage.run(params)
    result = run_stage(
        "train", tiny_params_file, "--set", "lyrics.train.batch_size=64", "--set", "lyrics.train.bptt=40"
    )
    line = assert_one_line_error(result, "batch_size=64", "bptt=40", str(params.lyrics.split.output))
    assert "too small" in line
    assert not (Path(params.lyrics.train.output_dir) / "model.pt").exists()
    assert not (tmp_path / "mlflow.db").exists()  # refused before any MLflow run was opened


# --- params -------------------------------------------------------------------------------------


def test_unknown_model_cell(tiny_params_file, tmp_path):
    for stage in ("clean", "train"):
        line = assert_one_line_error(
            run_stage(stage, tiny_params_file, "--set", "lyrics.model.cell=transformer"),
            "lyrics.model.cell",
            "transformer",
        )
        assert str(tiny_params_file) in line
    assert not any(p.exists() for p in clean_outputs(tmp_path))


def test_unknown_params_key(tmp_path, tiny_corpus):
    raw = tiny_params_dict(tmp_path, tiny_corpus)
    raw["lyrics"]["clean"]["min_char"] = 3  # typo of min_chars
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert_one_line_error(run_stage("clean", path), "lyrics.clean.min_char", str(path))
    assert not any(p.exists() for p in clean_outputs(tmp_path))


def test_bad_value_type(tiny_params_file, tmp_path):
    assert_one_line_error(
        run_stage("clean", tiny_params_file, "--set", "lyrics.clean.min_chars=lots"), "lyrics.clean.min_chars", "lots"
    )
    assert not any(p.exists() for p in clean_outputs(tmp_path))


@pytest.mark.parametrize(
    "arg, named",
    [
        ("lyrics.model.cell", "lyrics.model.cell"),  # no '='
        ("lyrics.nosuch.cell=gru", "lyrics.nosuch.cell"),  # no such section
    ],
)
def test_bad_set_syntax(tiny_params_file, tmp_path, arg, named):
    assert_one_line_error(run_stage("clean", tiny_params_file, "--set", arg), named)
    assert not any(p.exists() for p in clean_outputs(tmp_path))


def test_missing_params_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert_one_line_error(run_stage("clean", missing, cwd=tmp_path), str(missing), "not found")


def test_invalid_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("lyrics:\n  corpus: [unclosed\n", encoding="utf-8")
    assert_one_line_error(run_stage("clean", path), str(path), "YAML")
