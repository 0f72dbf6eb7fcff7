"""Helpers the tests share (a plain module; fixtures live in conftest.py): tiny synthetic lyrics and
review corpora, params that train in seconds, a copy of the project to run DVC and Prefect in,
and small process helpers."""

import csv
import io
import os
import random
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from tasks import clean, evaluate, ingest, predict, register, split, tokenize, train, vocab
from tasks.common.cli import run_cli
from tasks.common.params import load_params, section_from_yaml
from tasks.lyrics.batching import batchify
from tasks.lyrics.params import Train

ROOT = Path(__file__).resolve().parents[1]


JAY_CHOU = ROOT.parent / "shared" / "datasets" / "jaychou_lyrics.txt"


PHRASES = [
    "我爱你",
    "天空",
    "下雨",
    "回忆",
    "离开",
    "微笑",
    "城市",
    "夜晚",
    "想念",
    "故事",
    "风吹过",
    "心跳",
    "永远",
    "告白",
    "街角",
    "咖啡",
    "旋律",
    "月光",
    "海边",
    "秘密",
    "温柔",
    "等待",
]


def make_song(rng: random.Random, lines: int) -> list[str]:
    song = ["".join(rng.sample(PHRASES, rng.randint(2, 4))) for _ in range(lines)]
    return song + song[:2]  # a chorus repeats, as in real lyrics


def write_tiny_corpus(folder: Path, seed: int = 0) -> Path:
    """6 small songs, one file each, deterministic for a seed."""
    folder.mkdir(parents=True)
    rng = random.Random(seed)
    for i in range(6):
        (folder / f"song{i}.txt").write_text("\n".join(make_song(rng, 30)) + "\n", encoding="utf-8")
    return folder


def write_tiny_general_text(path: Path, seed: int = 7) -> Path:
    """A small "general" corpus for pretraining: 300 lines of the lyrics' phrases but the last two
    (温柔, 等待), so fine-tuning meets characters the base has never seen."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["".join(rng.sample(PHRASES[:-2], rng.randint(2, 5))) for _ in range(300)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tiny_pretrain_dict(section: dict, root: Path, corpus: Path | str) -> dict:
    """params.yaml's `pretrain:` with every path under root, a text-file corpus and a tiny model."""
    section = {**section, "corpus": str(corpus), "val_fraction": 0.1}
    section["vocab"] = {**section["vocab"], "output": str(root / "data/vocab/pretrain.json"), "min_freq": 1}
    section["model"] = {**section["model"], "embedding_size": 16, "hidden_size": 16, "num_layers": 1}
    section["train"] = {
        **section["train"],
        "output_dir": str(root / "models/pretrain"),
        "history": str(root / "reports/pretrain/history.csv"),
        "checkpoint_dir": str(root / "checkpoints/pretrain"),
        "device": "cpu",
        "batch_size": 4,
        "bptt": 8,
        "epoch_tokens": 1500,
        "epochs": 2,
        "val_tokens": 200,
    }
    section["register"] = {**section["register"], "output": str(root / "reports/pretrain/registered.json")}
    return section


def tiny_params_dict(tmp_path: Path, corpus: Path) -> dict:
    """The repo's params.yaml with every path under tmp_path and a model that trains in seconds."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    lp = params["lyrics"]
    lp["corpus"] = str(corpus)
    lp["base_model"] = None  # from scratch: the tests that fine-tune pretrain a tiny base first (tiny_pretrain)
    d = tmp_path
    params["pretrain"] = tiny_pretrain_dict(params["pretrain"], d, write_tiny_general_text(d / "general/news.txt"))
    lp["clean"].update(output=str(d / "data/clean.parquet"), report=str(d / "reports/clean.json"))
    lp["tokenize"].update(input=str(d / "data/clean.parquet"), output=str(d / "data/tokens.parquet"))
    lp["split"].update(input=str(d / "data/tokens.parquet"), output=str(d / "data/split.parquet"), block_lines=8)
    lp["vocab"].update(input=str(d / "data/split.parquet"), output=str(d / "data/vocab.json"))
    lp["model"].update(
        embedding_size=16, hidden_size=16, num_layers=1, dropout=0.0, embedding_dropout=0.0, weight_dropout=0.0
    )
    lp["train"].update(  # a plain schedule that learns in two epochs (the shipped one is for fine-tuning)
        scheduler="plateau",
        layer_lr_decay=1.0,
        output_dir=str(d / "models"),
        history=str(d / "reports/history.csv"),
        checkpoint_dir=str(d / "checkpoints"),
        batch_size=4,
        bptt=8,
        epochs=2,
        lr=0.01,
    )
    lp["evaluate"].update(
        output_dir=str(d / "reports"), metrics=str(d / "reports/metrics.json"), sample_starts=["天空"], sample_length=5
    )
    lp["register"].update(output=str(d / "reports/registered.json"))
    params["tracking"] = {"uri": f"sqlite:///{d / 'mlflow.db'}", "experiment": "test-lyrics"}
    return params


# Reviews: the label follows the sentiment words, so a model can learn it from a few dozen examples.
POSITIVE = ["很好", "满意", "干净", "推荐", "喜欢", "舒服", "热情", "划算", "好吃", "很快"]


NEGATIVE = ["太差", "失望", "很脏", "难吃", "退货", "生气", "糟糕", "后悔", "太慢", "冷淡"]


TOPICS = ["房间", "服务", "酒店", "送餐", "菜", "这本书", "快递", "价格", "前台", "早餐"]


def make_reviews(rng: random.Random, n: int) -> list[tuple[str, int]]:
    """n (text, label) pairs, half positive (1), half negative (0); some exact repeats, as in real data."""
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(POSITIVE if label else NEGATIVE, 2)
        rows.append(
            (f"{rng.choice(TOPICS)}{words[0]}，{rng.choice(TOPICS)}{words[1]}{rng.choice(['', '！', '。'])}", label)
        )
    return rows


def write_reviews_csv(
    path: Path, rows: list[tuple[str, object]], text_col: str = "text", label_col: str = "label"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([text_col, label_col])
        writer.writerows(rows)
    return path


TINY_REVIEWS_MODEL = {"embedding_size": 16, "hidden_size": 16, "num_layers": 1, "dropout": 0.0, "max_len": 20}


# From scratch, as shipped (tests/stages/test_reviews_pretrained.py pretrains a tiny base for init: pretrained)
TINY_REVIEWS_TRAIN = {"batch_size": 8, "epochs": 3, "lr": 0.01, "max_minutes": 2}


def tiny_reviews_params_dict(tmp_path: Path, corpus: Path) -> dict:
    """The repo's params.yaml (reviews section only) with every path under tmp_path and a tiny model."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    del params["lyrics"]
    rp = params["reviews"]
    d = tmp_path
    rp["input"].update(path=str(corpus), output=str(d / "data/raw.parquet"))
    rp["clean"].update(
        input=str(d / "data/raw.parquet"), output=str(d / "data/clean.parquet"), report=str(d / "reports/clean.json")
    )
    rp["tokenize"].update(input=str(d / "data/clean.parquet"), output=str(d / "data/tokens.parquet"))
    rp["split"].update(input=str(d / "data/tokens.parquet"), output=str(d / "data/split.parquet"))
    rp["vocab"].update(input=str(d / "data/split.parquet"), output=str(d / "data/vocab.json"), min_freq=1)
    rp["model"].update(TINY_REVIEWS_MODEL)
    rp["train"].update(
        output_dir=str(d / "models"),
        history=str(d / "reports/history.csv"),
        checkpoint_dir=str(d / "checkpoints"),
        **TINY_REVIEWS_TRAIN,
    )
    rp["lm"].update(history=str(d / "reports/lm_history.csv"), checkpoint_dir=str(d / "checkpoints/lm"))
    rp["evaluate"].update(
        output_dir=str(d / "reports"), metrics=str(d / "reports/metrics.json"), baseline_min_df=1, mistakes=5
    )
    rp["register"].update(output=str(d / "reports/registered.json"))
    params["tracking"] = {"uri": f"sqlite:///{d / 'mlflow.db'}", "experiment": "test-lyrics"}
    rp["experiment"] = "test-reviews"
    return params


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def run_reviews_stages(params, upto: str = "register") -> None:
    """Run the reviews stages in order, in-process, up to and including `upto`."""
    for name, stage in [
        ("ingest", ingest),
        ("clean", clean),
        ("tokenize", tokenize),
        ("split", split),
        ("vocab", vocab),
        ("train", train),
        ("evaluate", evaluate),
        ("register", register),
    ]:
        stage.run(params, task="reviews")
        if name == upto:
            return


def copy_project(dest: Path) -> None:
    """Copy the code and pipeline files (not data, models or stores) into dest, for DVC/Prefect e2e tests."""
    for name in ("tasks", "flows"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, dest / name)


def build_tiny_project(root: Path, tasks: tuple[str, ...] = ("lyrics",)) -> dict:
    """A copy of the project in root with tiny corpora and tiny model params for `tasks` (the other
    task's params section and dvc.yaml stages are left out); returns the environment to run its
    commands with (isolated MLflow store and Prefect home)."""
    copy_project(root)
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    if "lyrics" in tasks:  # fine-tuned from a tiny base pretrained on a tiny general text: the whole chain
        write_tiny_corpus(root / "data/raw/lyrics", seed=1)
        general = write_tiny_general_text(root / "data/raw/general.txt")
        # paths relative to the project, as the shipped params.yaml has them (so dvc.yaml's outs match)
        params["pretrain"] = tiny_pretrain_dict(params["pretrain"], Path("."), general.relative_to(root))
        params["lyrics"]["split"]["block_lines"] = 8
        params["lyrics"]["model"].update(embedding_size=16, hidden_size=16, num_layers=1, dropout=0.0)
        params["lyrics"]["train"].update(batch_size=4, bptt=8, epochs=2)
        params["lyrics"]["evaluate"].update(sample_starts=["天空"], sample_length=5)
    if "reviews" in tasks:
        write_reviews_csv(root / "data/raw/reviews.csv", make_reviews(random.Random(1), 160))
        params["reviews"]["input"]["path"] = "data/raw/reviews.csv"
        params["reviews"]["vocab"]["min_freq"] = 1
        params["reviews"]["model"].update(TINY_REVIEWS_MODEL)
        params["reviews"]["train"].update(TINY_REVIEWS_TRAIN)
        params["reviews"]["evaluate"].update(baseline_min_df=1, mistakes=5)
    dvc = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    for task in {"lyrics", "reviews"} - set(tasks):
        del params[task]
        dvc["stages"] = {k: v for k, v in dvc["stages"].items() if not k.startswith(f"{task}-")}
        dvc["plots"] = [p for p in dvc["plots"] if not next(iter(p)).startswith(f"{task}-")]
    if "lyrics" not in tasks:  # the base model is the lyrics model's start
        del params["pretrain"]
        dvc["stages"].pop("pretrain")
        dvc["plots"] = [p for p in dvc["plots"] if not next(iter(p)).startswith("pretrain-")]
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    write_params(root / "params.yaml", params)
    return {
        **os.environ,
        "PYTHONPATH": str(root),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


def stop(proc: subprocess.Popen | None) -> None:
    """Terminate a server a test started (kill it if it ignores that for 30 s)."""
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def sh(args: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command; on failure the assertion shows the tail of its output."""
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@contextmanager
def tiny_lyrics_run(tmp: Path, stages, model_updates: dict | None = None, **train_updates):
    """Write tiny lyrics params under tmp and run `stages` in-process there (MLflow store and its
    ./mlruns artifacts stay in tmp, not the repo); yields (params, {stage name: its result})."""
    raw = tiny_params_dict(tmp, write_tiny_corpus(tmp / "raw"))
    raw["lyrics"]["model"].update(model_updates or {})
    raw["lyrics"]["train"].update(device="cpu", **train_updates)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(tmp)
        params = load_params(path)
        yield params, {stage.__name__.split(".")[-1]: stage.run(params) for stage in stages}


# --- stage commands in a subprocess --------------------------------------------------------


def run_stage(stage: str, params_file: Path, *extra: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", f"tasks.{stage}", "--params", str(params_file), *extra],
        cwd=cwd or params_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *names: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ")
    for name in names:
        assert name in line, f"{name!r} not named in: {line}"
    return line


def write_lyrics_params(tmp_path: Path, corpus: Path, **section_updates) -> Path:
    raw = tiny_params_dict(tmp_path, corpus)
    for section, values in section_updates.items():
        raw["lyrics"][section].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


# --- the training loop on a learnable pattern -----------------------------------------------


def train_cfg(tmp_path, **kw) -> Train:
    values = dict(
        output_dir=str(tmp_path / "models"),
        history=str(tmp_path / "history.csv"),
        checkpoint_dir=str(tmp_path / "ckpt"),
        device="cpu",
        batch_size=4,
        bptt=6,
        epochs=6,
        optimizer="adamw",
        lr=0.02,
        layer_lr_decay=1.0,
        weight_decay=0.0,
        clip=1.0,
        scheduler="plateau",
        plateau_factor=0.5,
        plateau_patience=10,
        warmup_epochs=1,
        early_stopping_patience=50,
        max_minutes=60,
        seed=13,
    )
    values.update(kw)
    return section_from_yaml(Train, "lyrics.train", **values)


V = 12


def pattern_stream(pattern: list[int], repeats: int, batch_size: int) -> torch.Tensor:
    return batchify(torch.tensor(pattern * repeats), batch_size)


TRAIN_PATTERN = [4, 5, 6, 7, 8, 9, 10, 11, 3]


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


# --- the predict CLI in-process -----------------------------------------------------------------


def predict_main(monkeypatch, capsys, args, stdin=None):
    """tasks.predict's CLI in-process (run_cli included): returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["predict", *args])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = 0
    try:
        run_cli(predict.main)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def write_split_file(path: Path, token_lists, labels, splits, row_group_rows: int = 1024) -> Path:
    """A reviews split file as the split stage writes it (tokens, label, label_name, split), in row
    groups of `row_group_rows` rows."""
    table = pa.table(
        {
            "tokens": pa.array([list(t) for t in token_lists], pa.list_(pa.string())),
            "label": pa.array([int(y) for y in labels], pa.int64()),
            "label_name": pa.array([str(int(y)) for y in labels]),
            "split": pa.array(list(splits)),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_rows)
    return path


def dask_flow_script(flow_source: str, flow_name: str) -> str:
    """A script that runs `flow_name` (a Prefect flow taking a params file, defined in
    `flow_source`) on a 2-worker LocalCluster and prints `RESULT <its result as JSON>`. One Prefect
    API serves the flow and the Dask workers (else each worker starts its own), as on a real
    deployment where PREFECT_API_URL points every process at the same server."""
    head = textwrap.dedent(
        """
        import json, os, sys
        from distributed import LocalCluster
        from prefect import flow
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_API_URL, temporary_settings
        from flows.scaleout import on_dask, with_task_runner
        from flows.stages import clean_task, split_task, tokenize_task, vocab_task
        from tasks.common.params import load_params
        """
    )
    main = textwrap.dedent(
        f"""
        if __name__ == "__main__":
            server = SubprocessASGIServer()
            server.start(timeout=180)
            os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the workers
            with temporary_settings({{PREFECT_API_URL: server.api_url}}), \\
                    LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
                os.environ["PIPELINE_DASK_ADDRESS"] = cluster.scheduler_address
                result = with_task_runner({flow_name}, load_params(sys.argv[1]))(sys.argv[1])
            server.stop()
            print("RESULT", json.dumps(result))
        """
    )
    return head + textwrap.dedent(flow_source) + main
