"""End to end on a tiny review corpus: the `train-reviews` Prefect flow, then DVC over the same
project (both tasks' stages in one dvc.yaml): after `dvc commit` the reviews stages are up to date,
a forced re-run of the data stages reproduces the flow's files byte for byte, and a changed param
reruns only the stages downstream of it."""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.helpers import build_tiny_project, sh

pytestmark = pytest.mark.slow

STAGES = [
    "reviews-ingest",
    "reviews-clean",
    "reviews-tokenize",
    "reviews-split",
    "reviews-vocab",
    "reviews-train",
    "reviews-evaluate",
    "reviews-register",
]
DATA_FILES = [
    "data/raw/reviews.parquet",
    "data/clean/reviews.parquet",
    "data/tokens/reviews.parquet",
    "data/split/reviews.parquet",
    "data/vocab/reviews.json",
]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_reviews_flow_then_dvc(tmp_path):
    root = tmp_path
    env = build_tiny_project(root, tasks=("lyrics", "reviews"))  # the real two-task dvc.yaml
    sh(["git", "init", "-q"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    out = sh([sys.executable, "-m", "flows.train_reviews"], root, env)
    assert "test accuracy" in out.stdout and "TF-IDF baseline" in out.stdout
    metrics = json.loads((root / "reports/reviews/metrics.json").read_text())
    # The tiny corpus is learnable (the label follows the sentiment words): both models are far above
    # the majority class, and a one-class model (macro-F1 <= 0.5 on two classes) fails here.
    cm = np.array(metrics["confusion_matrix"])  # rows true, columns predicted
    majority = cm.sum(1).max() / cm.sum()
    assert (cm.sum(0) > 0).all(), "the model predicts one class only"
    assert metrics["test_accuracy"] >= majority + 0.3 and metrics["baseline_accuracy"] >= majority + 0.3
    assert metrics["test_macro_f1"] >= 0.8 and metrics["baseline_macro_f1"] >= 0.8
    assert metrics["stopped_by"] == "epochs"
    assert json.loads((root / "reports/reviews/registered.json").read_text())["version"] == "1"

    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run(json.loads((root / "models/reviews/mlflow_run.json").read_text())["run_id"])
    assert run.data.tags["prefect.flow_run_id"]
    assert client.get_experiment(run.info.experiment_id).name == "review-sentiment"
    mv = client.get_model_version_by_alias("review-sentiment", "champion")
    assert mv.tags["prefect.flow_run_id"] == run.data.tags["prefect.flow_run_id"]

    # What `make reviews` does next: record the flow's outputs in dvc.lock; DVC agrees nothing is stale.
    flow_md5 = {f: _md5(root / f) for f in DATA_FILES}
    sh(["dvc", "commit", "-q", "-f", *STAGES], root, env)
    status = sh(["dvc", "status", *STAGES], root, env).stdout
    assert "up to date" in status, status

    # The same stage modules under DVC give byte-identical datasets.
    sh(["dvc", "repro", "-q", "-f", "-s", *STAGES[:5]], root, env)
    assert {f: _md5(root / f) for f in DATA_FILES} == flow_md5

    # A changed evaluate param reruns evaluate and register only; then a second repro is a no-op.
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["reviews"]["evaluate"]["baseline_C"] = 1.0
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    out = sh(["dvc", "repro", "reviews-register"], root, env).stdout
    ran = {s for s in STAGES if f"Running stage '{s}'" in out}
    assert ran == {"reviews-evaluate", "reviews-register"}, out
    assert "Running stage" not in sh(["dvc", "repro", "reviews-register"], root, env).stdout
    assert "test_macro_f1" in sh(["dvc", "metrics", "show"], root, env).stdout
    # The same model from the same training run: register reuses its version, no duplicate.
    registered = json.loads((root / "reports/reviews/registered.json").read_text())
    assert registered["version"] == "1" and "already holds the alias" in registered["reason"]
    assert len(client.search_model_versions("name = 'review-sentiment'")) == 1
