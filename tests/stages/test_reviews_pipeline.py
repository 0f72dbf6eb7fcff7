"""Tier 2-3, stages on a tiny review corpus in a temp dir: every stage's outputs, champion gating
against a real SQLite registry, the served pyfunc, and tasks.predict on awkward inputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import register
from tests.helpers import (
    ROOT,
    make_reviews,
    predict_main,
    run_reviews_stages,
    tiny_reviews_params_dict,
    write_params,
    write_reviews_csv,
)

LONG_TEXT = "房间很干净，服务也好。" * 500  # far beyond max_len
AWKWARD = [
    "",
    "   ",
    LONG_TEXT,
    "The room was clean and the staff friendly!",
    "😀👍",
    "房间很干净，服务也好",
    "送餐太慢了，菜都凉了",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Run every reviews stage once (in-process) on a tiny corpus; yields (params, params_file, env)."""
    import random

    tmp = tmp_path_factory.mktemp("reviews")
    corpus = write_reviews_csv(tmp / "raw/reviews.csv", make_reviews(random.Random(0), 240))
    params_file = write_params(tmp / "params.yaml", tiny_reviews_params_dict(tmp, corpus))
    from tasks.common.params import load_params

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        mp.chdir(tmp)  # MLflow puts artifacts in ./mlruns beside a sqlite store: keep them out of the repo
        params = load_params(params_file)
        run_reviews_stages(params)
        yield params, params_file, tmp


def test_stage_outputs(trained):
    params, _, tmp = trained
    rp = params.reviews
    metrics = json.loads(Path(rp.evaluate.metrics).read_text())
    assert metrics["classes"] == ["0", "1"] and len(metrics["confusion_matrix"]) == 2
    # The label follows the sentiment words: both models learn it. A model that answers one class
    # scores the majority share and a macro-F1 of at most 0.5, and fails here.
    for prefix in ("test", "baseline"):
        cm = np.array(metrics[f"{prefix}_confusion_matrix" if prefix == "baseline" else "confusion_matrix"])
        assert metrics[f"{prefix}_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())  # rows true, columns predicted
        assert (cm.sum(0) > 0).all(), f"{prefix}: predicts one class only"
        assert metrics[f"{prefix}_accuracy"] >= cm.sum(1).max() / cm.sum() + 0.3  # far above the majority class
        assert metrics[f"{prefix}_macro_f1"] >= 0.8 and metrics[f"{prefix}_roc_auc"] >= 0.9
    assert metrics["test_macro_f1"] >= metrics["baseline_macro_f1"] - 0.15  # near the TF-IDF baseline
    assert metrics["stopped_by"] == "epochs"  # the tiny params' 3 epochs ran; no budget is set by default
    # the baseline's C was chosen on validation from the params' grid, and the scores are reported
    scores = metrics["baseline_val_macro_f1_by_C"]
    assert len(scores) == len(rp.evaluate.baseline_C) and scores[f"{metrics['baseline_C']:g}"] == max(scores.values())
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["test_reviews"]
    for name in ("confusion_matrix.png", "pr_curve.png", "learning_curves.png"):
        assert (Path(rp.evaluate.output_dir) / name).read_bytes()[:4] == b"\x89PNG"
    assert (Path(rp.evaluate.output_dir) / "mistakes.md").read_text().startswith("# Most confident mistakes")
    history = pd.read_csv(rp.train.history)
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr"} <= set(history.columns)
    registered = json.loads(Path(rp.registry.output).read_text())
    assert registered["model_name"] == "review-sentiment" and registered["promoted"]

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    run = client.get_run(json.loads((Path(rp.train.output_dir) / "mlflow_run.json").read_text())["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "test-reviews"
    assert "val_macro_f1" in run.data.metrics and "test_macro_f1" in run.data.metrics
    mv = client.get_model_version_by_alias("review-sentiment", "champion")
    assert mv.tags["score_metric"] == "test_macro_f1"
    for tag in ("git_commit", "params_hash", "data.input_md5", "data.split_md5", "eval_set_hash"):
        assert mv.tags[tag]


def test_evaluate_in_small_record_batches_equals_one_read(trained, tmp_path):
    from tasks.reviews.evaluate import evaluate

    params, _, _ = trained
    rp = params.reviews
    out = tmp_path / "reports"
    small = rp.model_copy(
        update={
            "split": rp.split.model_copy(update={"batch_rows": 7}),
            "evaluate": rp.evaluate.model_copy(update={"output_dir": str(out), "metrics": str(out / "metrics.json")}),
        }
    )
    evaluate(params, small, "reviews")
    whole, batched = (json.loads(Path(p).read_text()) for p in (rp.evaluate.metrics, out / "metrics.json"))
    assert batched == whole and whole["test_reviews"] > 7
    mistakes = "mistakes.md"
    assert (out / mistakes).read_text() == (Path(rp.evaluate.output_dir) / mistakes).read_text()


def test_the_baseline_fits_on_a_seeded_sample_when_the_train_split_is_larger_than_its_cap(trained, tmp_path):
    from tasks.reviews.evaluate import baseline_sample, evaluate

    params, _, _ = trained
    rp = params.reviews
    whole = json.loads(Path(rp.evaluate.metrics).read_text())
    n_train = whole["baseline_train_reviews"]
    assert n_train > 60 and "train reviews" not in whole["baseline"]  # the tiny split is under the cap: all of it
    out = tmp_path / "reports"
    capped = rp.model_copy(
        update={
            "evaluate": rp.evaluate.model_copy(
                update={"output_dir": str(out), "metrics": str(out / "metrics.json"), "baseline_max_train": 60}
            )
        }
    )
    evaluate(params, capped, "reviews")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["baseline_train_reviews"] == 60 and f"on 60 of {n_train} train reviews" in metrics["baseline"]
    assert metrics["test_macro_f1"] == whole["test_macro_f1"]  # the model's own scores do not move
    keep = baseline_sample(n_train, 60, seed=13)
    assert keep.sum() == 60 and np.array_equal(keep, baseline_sample(n_train, 60, seed=13))
    assert baseline_sample(n_train, None, 13) is None and baseline_sample(n_train, n_train, 13) is None


def test_the_registered_version_is_described_by_its_model_card(trained, tmp_path):
    import mlflow

    params, _, tmp = trained
    rp = params.reviews
    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    registered = json.loads(Path(rp.registry.output).read_text())
    mv = client.get_model_version("review-sentiment", registered["version"])
    card = (Path(rp.evaluate.output_dir) / "model_card.md").read_text(encoding="utf-8")
    assert mv.description == card  # the last register wrote both
    assert card.startswith(f"# review-sentiment v{mv.version}\n")
    for heading in ("Registry", "Model", "Data", "Test metrics", "Confusion matrix (test)", "Known limits", "Lineage"):
        assert f"\n## {heading}\n" in card
    assert registered["reason"] in card and "macro-F1 (the gate)" in card and "true \\ predicted" in card
    assert f"`{mv.run_id}`" in card and mv.tags["eval_set_hash"] in card
    # the same card, as written for that version, is in its run's artifacts
    logged = Path(client.download_artifacts(mv.run_id, "model_card.md", str(tmp_path))).read_text(encoding="utf-8")
    assert logged.startswith(f"# review-sentiment v{mv.version}\n") and "## Known limits" in logged


def new_training_run(params) -> None:
    """Stand in for another training of the same model: a new MLflow run that register reads as the
    pipeline's (a register of the same run reuses its version: tests/stages/test_registry.py)."""
    import mlflow

    from tasks.common import tracking

    tracking.configure(params, "reviews")
    with mlflow.start_run() as run:
        pass
    tracking.save_run_id(params.reviews.train.output_dir, run.info.run_id)


def test_champion_moves_only_when_macro_f1_beats_it(trained):
    params, _, _ = trained
    metrics_path = Path(params.reviews.evaluate.metrics)
    run_id_path = Path(params.reviews.train.output_dir) / "mlflow_run.json"
    original, original_run = json.loads(metrics_path.read_text()), run_id_path.read_bytes()
    try:
        worse = {**original, "test_macro_f1": original["test_macro_f1"] - 0.01}
        metrics_path.write_text(json.dumps(worse))
        new_training_run(params)
        result = register.run(params, task="reviews")
        assert not result["promoted"] and "does not beat" in result["reason"]
        better = {**original, "test_macro_f1": original["test_macro_f1"] + 0.01}
        metrics_path.write_text(json.dumps(better))
        new_training_run(params)
        result = register.run(params, task="reviews")
        assert result["promoted"] and "beats" in result["reason"]
        other_split = {**worse, "eval_set_hash": "another-split"}
        metrics_path.write_text(json.dumps(other_split))
        new_training_run(params)
        result = register.run(params, task="reviews")
        # scored on another test split: never ranked on its old score (reviews have no re-scoring yet)
        assert not result["promoted"] and "could not be re-scored" in result["reason"]
        assert result["version"] == "4"  # one new version per training run
    finally:
        metrics_path.write_text(json.dumps(original))
        run_id_path.write_bytes(original_run)


# Reviews built from the corpus's sentiment words: a model that learned the label gets each right.
CLEAR = {"房间很干净，服务也好": 1, "送餐太慢了，菜都凉了": 0, "房间很好，服务满意": 1, "菜太差，失望": 0}


def test_pyfunc_takes_raw_text(trained):
    import mlflow

    model = mlflow.pyfunc.load_model("models:/review-sentiment@champion")
    out = model.predict(pd.DataFrame({"text": AWKWARD}))
    # label and probability, and (the predict contract) null for a text the model cannot judge
    assert {"label", "probability"} <= set(out.columns) and len(out) == len(AWKWARD)
    judged = out[out["label"].notna()]
    assert set(judged["label"]) <= {0, 1} and judged["probability"].between(0.5, 1).all()
    assert model.metadata.get_input_schema().input_names() == ["text"]
    clear = model.predict(pd.DataFrame({"text": list(CLEAR)}))
    assert list(clear["label"]) == list(CLEAR.values())  # right, not just a valid label


def test_predict_cli_default_model(trained):
    """The command as users type it: texts as arguments, the registry's champion by default."""
    _, _, tmp = trained
    proc = subprocess.run(
        [sys.executable, "-m", "tasks.predict", "房间很干净，服务也好", "送餐太慢了，菜都凉了"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    label, prob, text = lines[0].split("\t")
    assert label == "1" and 0.5 <= float(prob) <= 1 and text == "房间很干净，服务也好"
    assert lines[1].split("\t")[0] == "0"  # 送餐太慢了，菜都凉了


def test_predict_stdin_jsonl_file_and_awkward_texts(trained, monkeypatch, capsys):
    params, _, tmp = trained
    model_pt = str(Path(params.reviews.train.output_dir) / "model.pt")
    # stdin, jsonl, tiny batches: one object per input line, in order, awkward lines included.
    lines = [t for t in AWKWARD if t.strip()] + ["", "好"]
    code, out, _ = predict_main(
        monkeypatch,
        capsys,
        ["-", "--format", "jsonl", "--batch-size", "2", "--model", model_pt],
        stdin="\n".join(lines) + "\n",
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == lines
    assert all({"text", "label", "probability"} <= set(r) and r["label"] in (0, 1, None) for r in rows)
    assert [r["label"] for r in rows if r["text"] in CLEAR] == [CLEAR[r["text"]] for r in rows if r["text"] in CLEAR]
    # A file, read in batches, through the registry URI.
    path = tmp / "in.txt"
    path.write_text("\n".join(["很好"] * 7) + "\n", encoding="utf-8")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    code, out, _ = predict_main(monkeypatch, capsys, ["--file", str(path), "--batch-size", "3"])
    assert code == 0 and len(out.splitlines()) == 7
    # Arguments with empty, very long and non-Chinese texts: an answer each, never a traceback.
    code, out, _ = predict_main(monkeypatch, capsys, ["--model", model_pt, "--", *AWKWARD])
    assert code == 0 and len(out.splitlines()) >= len(AWKWARD)


def test_predict_bad_input(trained, monkeypatch, capsys):
    params, _, tmp = trained
    model_pt = str(Path(params.reviews.train.output_dir) / "model.pt")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
    (tmp / "gbk.txt").write_bytes("很好\n".encode("gbk") * 3)
    for args, message in [
        (["--file", str(tmp / "missing.txt"), "--model", model_pt], "input file not found"),
        (["--file", str(tmp / "gbk.txt"), "--model", model_pt], "not UTF-8"),
        ([], "no input"),
        (["好", "--model", "models:/no-such-model@champion"], "cannot load models:/no-such-model"),
    ]:
        code, _, err = predict_main(monkeypatch, capsys, args)
        assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("error: "), err


def test_checkpoint_is_self_describing(trained):
    import torch

    params, _, _ = trained
    ckpt = torch.load(Path(params.reviews.train.output_dir) / "model.pt", weights_only=True)
    assert ckpt["kind"] == "classifier" and ckpt["classes"] == [0, 1]
    assert ckpt["model_args"]["max_len"] == params.reviews.model.max_len
    assert ckpt["tokenizer"]["level"] == "word" and ckpt["clean"]["to_simplified"] is True
