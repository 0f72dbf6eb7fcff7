"""The data stages fanned out over shards of rows (flows/scaleout.py): the shards cover every row
once, merged shard results give the files a local run writes, and the flows on a 2-worker Dask
LocalCluster write those same files (clean, split, vocab; tokenize: tests/stages/test_tokenize_scale.py)."""

import json
import random
import re
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from flows import scaleout
from tasks import clean, ingest, split, tokenize, vocab
from tasks.catalog import stage_module
from tasks.common.params import load_params, task_section
from tasks.text import tokenize_stream
from tasks.text.vocab import sum_counts, token_counts_by_split
from tests.helpers import build_tiny_project, dask_flow_script, make_reviews, sh, write_params, write_reviews_csv
from tests.stages.test_tokenize_scale import cfg_for, write_clean_reviews

SHARD_ROWS = 50  # 174 reviews, 160 once cleaned, and 180 lyric lines: 3 shards or more per stage
# The stages the flows fan out (tokenize aside), in the order they run: (task, stage).
STAGES = {
    "reviews-clean": ("reviews", "clean"),
    "reviews-split": ("reviews", "split"),
    "reviews-vocab": ("reviews", "vocab"),
    "lyrics-split": ("lyrics", "split"),
}


def stage_cfg(params, stage: str):
    task, name = STAGES[stage]
    return getattr(task_section(params, task), name)


def outputs(params, stage: str) -> list[str]:
    """The files stage `stage` writes (clean: its table and its report)."""
    cfg = stage_cfg(params, stage)
    return [cfg.output, cfg.report] if STAGES[stage][1] == "clean" else [cfg.output]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """A tiny project of both tasks, tokenized in small batches, with each stage's local run kept:
    its summary, and its files copied to `<file>.local`."""
    root = tmp_path_factory.mktemp("project")
    env = build_tiny_project(root, tasks=("lyrics", "reviews"))
    reviews = make_reviews(random.Random(1), 160)  # the tiny project's, and rows that clean drops or changes:
    reviews += reviews[:10]  # duplicates, a shard or more away from their first copies
    reviews.append((reviews[20][0], 1 - reviews[20][1]))  # a conflict: both copies go
    reviews += [("", 0), ("好", 1), ("<br/>ＡＢＣ服務很好！！！", 1)]  # empty, too short, rewritten by the rules
    write_reviews_csv(root / "data/raw/reviews.csv", reviews)
    raw = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    for task in ("lyrics", "reviews"):
        raw[task]["tokenize"].update(batch_rows=20, workers=1)
        raw[task]["split"]["batch_rows"] = 20
    raw["orchestration"]["shard_rows"] = SHARD_ROWS
    write_params(root / "params.yaml", raw)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        params = load_params("params.yaml")
        ingest.run(params, task="reviews")
        summaries = {"reviews-clean": clean.run(params, task="reviews")}
        clean.run(params, task="lyrics")
        for task in ("lyrics", "reviews"):
            tokenize.run(params, task=task)
        summaries["reviews-split"] = split.run(params, task="reviews")
        summaries["reviews-vocab"] = vocab.run(params, task="reviews")
        summaries["lyrics-split"] = split.run(params, task="lyrics")
        for stage in STAGES:
            for path in outputs(params, stage):
                shutil.copy(path, f"{path}.local")
    return {"root": root, "env": env, "params": params, "summaries": summaries}


def local_copy(project: dict, path: str) -> Path:
    return project["root"] / f"{path}.local"


def stage_input(project: dict, stage: str) -> Path:
    """The stage's input as its local run read it: vocab's is the local split's output."""
    path = stage_cfg(project["params"], stage).input
    return local_copy(project, path) if stage == "reviews-vocab" else project["root"] / path


def shards_of(path: Path, shard_rows: int = SHARD_ROWS) -> list[tuple[int, int]]:
    return scaleout.input_shards(pq.ParquetFile(path), shard_rows)


@pytest.mark.parametrize(("rows", "shard_rows", "batch_rows"), [(0, 5, 1), (1, 5, 1), (700, 120, 50), (99, 7, 1)])
def test_row_ranges_cover_every_row_once_in_order(rows, shard_rows, batch_rows):
    ranges = tokenize_stream.row_ranges(rows, shard_rows, batch_rows)
    covered = [i for start, stop in ranges for i in range(start, stop)]
    assert covered == list(range(rows))
    assert all(stop - start >= shard_rows and (stop - start) % batch_rows == 0 for start, stop in ranges[:-1])


def test_tokenize_shards_match_a_file_whose_row_groups_are_not_whole_batches(tmp_path):
    """A cleaned file's row groups vary in size (the rows each batch kept): a shard's batches still
    start where a whole-file read's do, so the merged file has the local run's row groups."""
    clean_file = write_clean_reviews(tmp_path / "whole.parquet", 300)
    pq.write_table(pq.read_table(clean_file), tmp_path / "odd.parquet", row_group_size=37)
    local = cfg_for(tmp_path, tmp_path / "odd.parquet", "local", workers=1, batch_rows=50)
    sharded = cfg_for(tmp_path, tmp_path / "odd.parquet", "sharded", batch_rows=50)
    tokenize_stream.tokenize_file(local, keep_text=True)
    shards = tokenize_stream.plan_shards(sharded, shard_rows=100)
    tables = (tokenize_stream.tokenize_shard(sharded, start, stop, True) for start, stop in shards)
    tokenize_stream.write_tables(tables, sharded, keep_text=True)
    assert Path(sharded.output).read_bytes() == Path(local.output).read_bytes()


@pytest.mark.parametrize("shard_rows", [SHARD_ROWS, 7])  # 7: shards that cut through batches and row groups
def test_clean_from_sharded_rules_is_the_local_file(project, tmp_path, shard_rows):
    cfg = stage_cfg(project["params"], "reviews-clean")
    cfg = cfg.model_copy(update={"input": str(project["root"] / cfg.input), "output": str(tmp_path / "clean.parquet")})
    shards = shards_of(Path(cfg.input), shard_rows)
    assert len(shards) >= 3
    cleaned = (part for start, stop in shards for part in scaleout.cleaned_rows("reviews", cfg, start, stop))
    report = stage_module("reviews", "clean").clean_file(cfg, cleaned=cleaned)
    assert report == project["summaries"]["reviews-clean"]
    dropped = {name: rule["dropped"] for name, rule in report["rules"].items()}
    assert dropped["duplicates"] == 10 and dropped["conflicting_labels"] == 2  # decided across shards
    local = local_copy(project, stage_cfg(project["params"], "reviews-clean").output)
    assert Path(cfg.output).read_bytes() == local.read_bytes()


@pytest.mark.parametrize("task", ["reviews", "lyrics"])
@pytest.mark.parametrize("shard_rows", [SHARD_ROWS, 7])
def test_split_from_sharded_hashes_is_the_local_file(project, tmp_path, task, shard_rows):
    stage = f"{task}-split"
    cfg = stage_cfg(project["params"], stage)
    cfg = cfg.model_copy(update={"input": str(stage_input(project, stage))})
    shards = shards_of(Path(cfg.input), shard_rows)
    assert len(shards) >= 3
    hashed = (part for start, stop in shards for part in scaleout.split_hashes(task, cfg, start, stop))
    summary = split.split_file(task, cfg, cfg.input, tmp_path / "sharded.parquet", cfg.batch_rows, hashed)
    assert summary == project["summaries"][stage]
    assert (tmp_path / "sharded.parquet").read_bytes() == local_copy(project, cfg.output).read_bytes()


@pytest.mark.parametrize("shard_rows", [SHARD_ROWS, 7])
def test_summed_shard_counts_are_the_file_counts(project, shard_rows):
    path = stage_input(project, "reviews-vocab")
    shards = shards_of(path, shard_rows)
    assert len(shards) >= 3
    summed = sum_counts(scaleout.token_counts(str(path), start, stop, 16) for start, stop in shards)
    whole = token_counts_by_split(path)
    assert summed == whole and all(sum(whole[s].values()) > 0 for s in ("train", "val", "test"))


FLOW_SCRIPT = dask_flow_script(
    """
    @flow
    def data_stages(params_file: str) -> dict:
        params = load_params(params_file)
        return {
            "on_dask": on_dask(),
            "reviews-clean": clean_task(params, task="reviews"),
            "reviews-split": split_task(params, task="reviews"),
            "reviews-vocab": vocab_task(params, task="reviews"),
            "lyrics-split": split_task(params, task="lyrics"),
        }
""",
    "data_stages",
)


def finished_tasks(logs: str, name: str) -> int:
    """How many runs of Prefect task `name` (e.g. `split-hashes`) completed, by the workers' logs."""
    return len(re.findall(rf"Task run '{name}-[^']*' - Finished in state Completed", logs))


@pytest.mark.slow
def test_dask_local_cluster_writes_the_local_files(project):
    pytest.importorskip("prefect_dask")
    root, params = project["root"], project["params"]
    for stage in STAGES:
        for path in outputs(params, stage):
            (root / path).unlink()
    (root / "flow.py").write_text(FLOW_SCRIPT, encoding="utf-8")
    out = sh([sys.executable, "flow.py", "params.yaml"], root, project["env"], timeout=300)
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert result == {"on_dask": True, **json.loads(json.dumps(project["summaries"]))}
    for stage in STAGES:
        for path in outputs(params, stage):
            assert (root / path).read_bytes() == local_copy(project, path).read_bytes(), path
    logs = out.stdout + out.stderr
    shards = {stage: len(shards_of(stage_input(project, stage))) for stage in STAGES}
    assert min(shards.values()) >= 3
    assert finished_tasks(logs, "clean-rows") == shards["reviews-clean"]  # one task per shard ran
    assert finished_tasks(logs, "split-hashes") == shards["reviews-split"] + shards["lyrics-split"]
    assert finished_tasks(logs, "vocab-counts") == shards["reviews-vocab"]
