"""Reproducible by default: with no wall-clock budget (`train.max_minutes: null`, the default), the
same params on the same machine give the same model and the same metrics, for both tasks; when a
budget is set and fires, the run says so (`stopped_by: max_minutes` in the stage result, model.pt,
metrics.json and the MLflow run's tags)."""

import csv
import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tasks import clean, evaluate, split, tokenize, train, vocab
from tasks.common.params import load_params
from tests.helpers import (
    ROOT,
    make_reviews,
    run_reviews_stages,
    tiny_lyrics_run,
    tiny_reviews_params_dict,
    write_params,
    write_reviews_csv,
)

TIMING = {"seconds", "tokens_per_s", "reviews_per_s"}  # the only columns a machine's speed may change
LYRICS_STAGES = (clean, tokenize, split, vocab, train, evaluate)


def outputs(params, task: str) -> dict:
    """What a run produced, timing left out: history rows, metrics.json, the weights, stopped_by."""
    tp = getattr(params, task)
    with open(tp.train.history, newline="", encoding="utf-8") as f:
        history = [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]
    ckpt = torch.load(Path(tp.train.output_dir) / "model.pt", weights_only=True)
    return {
        "history": history,
        "metrics": json.loads(Path(tp.evaluate.metrics).read_text(encoding="utf-8")),
        "weights": ckpt["state_dict"],
        "stopped_by": ckpt["stopped_by"],
    }


def run_tag(params, run_id: str, key: str) -> str | None:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=params.tracking.uri).get_run(run_id).data.tags.get(key)


def lyrics_run(tmp: Path, **train_updates) -> tuple[dict, dict]:
    # dropout on, so the run draws random masks: the same seed must give the same ones
    with tiny_lyrics_run(tmp, LYRICS_STAGES, model_updates={"dropout": 0.3}, **train_updates) as (params, results):
        return outputs(params, "lyrics"), {
            **results["train"],
            "tag": run_tag(params, results["train"]["run_id"], "stopped_by"),
        }


def reviews_run(tmp: Path) -> tuple[dict, dict]:
    corpus = write_reviews_csv(tmp / "raw/reviews.csv", make_reviews(random.Random(0), 160))
    raw = tiny_reviews_params_dict(tmp, corpus)
    raw["reviews"]["model"]["dropout"] = 0.3
    raw["reviews"]["train"].update(device="cpu", max_minutes=None)
    path = write_params(tmp / "params.yaml", raw)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(tmp)
        params = load_params(path)
        run_reviews_stages(params, upto="evaluate")
        run_id = json.loads((Path(params.reviews.train.output_dir) / "mlflow_run.json").read_text())["run_id"]
        return outputs(params, "reviews"), {"tag": run_tag(params, run_id, "stopped_by")}


def assert_same(first: dict, second: dict) -> None:
    assert first["history"] == second["history"]  # every loss, score and lr, to the last digit
    assert first["metrics"] == second["metrics"]
    assert first["weights"].keys() == second["weights"].keys()
    for name, tensor in first["weights"].items():
        assert torch.equal(tensor, second["weights"][name]), name


def test_the_budget_is_off_by_default():
    params = load_params(ROOT / "params.yaml")
    assert params.lyrics.train.max_minutes is None and params.reviews.train.max_minutes is None


def test_two_lyrics_runs_of_the_same_params_give_the_same_model_and_metrics(tmp_path):
    first, info = lyrics_run(tmp_path / "a", max_minutes=None)
    second, _ = lyrics_run(tmp_path / "b", max_minutes=None)
    assert len(first["history"]) == 2  # tiny params: 2 epochs
    assert_same(first, second)
    assert first["stopped_by"] == first["metrics"]["stopped_by"] == info["stopped_by"] == info["tag"] == "epochs"


def test_two_reviews_runs_of_the_same_params_give_the_same_model_and_metrics(tmp_path):
    first, info = reviews_run(tmp_path / "a")
    second, _ = reviews_run(tmp_path / "b")
    assert len(first["history"]) == 3  # tiny params: 3 epochs
    assert_same(first, second)
    assert first["stopped_by"] == first["metrics"]["stopped_by"] == info["tag"] == "epochs"


def test_a_budget_that_fires_is_recorded_as_the_reason_training_stopped(tmp_path, monkeypatch, caplog):
    from tasks.training import loop

    # The loop's clock: 0 when training starts, an hour at every later reading (the budget has run
    # out by the end of epoch 1, whatever the machine). Only the loop module sees this clock.
    readings = iter([0.0])
    clock = SimpleNamespace(monotonic=lambda: next(readings, 3600.0), perf_counter=time.perf_counter)
    monkeypatch.setattr(loop, "time", clock)
    caplog.set_level("INFO", logger="tasks.training.loop")
    cut, info = lyrics_run(tmp_path, epochs=3, max_minutes=1)
    assert len(cut["history"]) == 1  # stopped after the first of 3 epochs
    assert cut["stopped_by"] == cut["metrics"]["stopped_by"] == info["stopped_by"] == info["tag"] == "max_minutes"
    assert "stopping: train.max_minutes=1.0 reached after epoch 1 of 3" in caplog.text
