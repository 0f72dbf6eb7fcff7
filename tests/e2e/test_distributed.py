"""Data-parallel training: the sharding helpers in a real 2-process gloo group, then
`torchrun --nproc_per_node=2 -m tasks.train` on the tiny project for both tasks."""

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tasks.training import distributed
from tests.helpers import build_tiny_project, sh

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _helpers_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        data = torch.arange(40).view(5, 8)  # (N, B) with 8 columns
        result = {
            "columns": distributed.shard_columns(data).tolist(),
            "batches": distributed.shard_batches([[i] for i in range(7)]),
            "sum": distributed.all_reduce_sum(rank + 1.0, 10.0),
            "main": distributed.from_main({"rank": rank}),
            "gathered": distributed.all_gather(rank * 10),
        }
        Path(out_dir, f"{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_sharding_and_collectives_in_a_two_process_group(tmp_path):
    mp.spawn(_helpers_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1))
    data = torch.arange(40).view(5, 8)
    # each rank: a block of whole columns (contiguous text streams), together all of them
    assert r0["columns"] == data[:, :4].tolist() and r1["columns"] == data[:, 4:].tolist()
    # disjoint batches, the same count on each rank (7 batches: the odd one out is dropped)
    assert len(r0["batches"]) == len(r1["batches"]) == 3
    assert not {b[0] for b in r0["batches"]} & {b[0] for b in r1["batches"]}
    assert r0["sum"] == r1["sum"] == [3.0, 20.0]
    assert r0["main"] == r1["main"] == {"rank": 0}
    assert r0["gathered"] == r1["gathered"] == [0, 10]


def test_single_process_helpers_are_no_ops():
    data = torch.arange(12).view(3, 4)
    assert not distributed.active()
    assert distributed.shard_columns(data) is data
    assert distributed.shard_batches([[1], [2], [3]]) == [[1], [2], [3]]
    assert distributed.all_reduce_sum(1.5, 2.0) == [1.5, 2.0]
    assert distributed.from_main("x") == "x" and distributed.all_gather(3) == [3]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The tiny project with both tasks' data stages run (in-process: a subprocess per stage costs
    seconds of imports)."""
    # Stage imports stay here: mp.spawn's workers import this module, and need only torch.
    from tasks import clean, ingest, pretrain, split, tokenize, vocab
    from tasks.common.params import load_params

    root = tmp_path_factory.mktemp("ddp")
    env = build_tiny_project(root, ("lyrics", "reviews"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        params = load_params("params.yaml")
        pretrain.run(params)  # the tiny base the lyrics model fine-tunes from
        for stage in (clean, tokenize, split, vocab):
            stage.run(params, task="lyrics")
        for stage in (ingest, clean, tokenize, split, vocab):
            stage.run(params, task="reviews")
    return root, env


def torchrun(root: Path, env: dict, *args: str):
    return sh(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "tasks.train",
            *args,
        ],
        root,
        env,
        timeout=300,
    )


def test_torchrun_trains_the_language_model(project):
    root, env = project
    proc = torchrun(root, env, "--set", "lyrics.train.epochs=4", "--set", "lyrics.train.lr=0.01")
    log = proc.stdout + proc.stderr
    assert log.count("distributed: 2 processes, backend gloo") == 1  # rank 0 alone logs
    assert log.count("epoch   1 |") == 1

    history = (root / "reports/lyrics/history.csv").read_text().splitlines()
    losses = [float(line.split(",")[1]) for line in history[1:]]  # train_loss column
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert not (root / ".checkpoints/lyrics/last.pt").exists()

    # saved unwrapped: loads into a fresh model as a single-process checkpoint does
    from tasks.serving.lyrics_generator import load_checkpoint

    ckpt = torch.load(root / "models/lyrics/model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])
    model, vocab_, _ = load_checkpoint(root / "models/lyrics/model.pt")
    assert model.embedding.num_embeddings == len(vocab_)

    import mlflow

    run_id = json.loads((root / "models/lyrics/mlflow_run.json").read_text())["run_id"]
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    run = mlflow.get_run(run_id)
    assert run.data.params["world_size"] == "2"
    assert len(mlflow.search_runs(experiment_names=["lyrics-lm"])) == 1  # one run, not one per rank

    from tasks import evaluate
    from tasks.common.params import load_params
    from tasks.lyrics.batching import lm_stream
    from tasks.lyrics.model import RNNLanguageModel
    from tasks.lyrics.neural_cache import perplexities
    from tasks.text.vocab import tokens_by_split

    with pytest.MonkeyPatch.context() as patch:  # in-process: a subprocess would re-import everything
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
        params = load_params("params.yaml")
        metrics = evaluate.run(params)
        test = lm_stream(tokens_by_split(params.lyrics.split.output)["test"], vocab_)  # (N,)
    # data-parallel training lowered the perplexity: well below the same model at its initial
    # weights (seeded as the train stage seeds it) and below the uniform guess
    torch.manual_seed(params.lyrics.train.seed)
    untrained = RNNLanguageModel(**ckpt["model_args"])
    assert metrics["test_perplexity"] == pytest.approx(perplexities(model, test, None)[0], rel=1e-5)
    assert metrics["test_perplexity"] < 0.8 * min(perplexities(untrained, test, None)[0], len(vocab_))


def test_torchrun_trains_the_classifier(project):
    root, env = project
    torchrun(root, env, "--task", "reviews", "--set", "reviews.train.epochs=3")
    history = (root / "reports/reviews/history.csv").read_text().splitlines()
    header = history[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in history[1:]]
    assert len(rows) == 3 and float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    from tasks.serving.review_predictor import ReviewModel

    labels, _ = ReviewModel(root / "models/reviews/model.pt").predict(["房间很好，服务满意", "菜太差，失望"])
    assert labels == [1, 0]  # the sentiment words of the tiny corpus, learnt: right, not just valid
