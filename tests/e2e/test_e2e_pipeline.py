"""End to end on a tiny corpus: the Prefect flow, then DVC over the same project.

One project directory goes through what `make run` does (flow → dvc add/commit), then `dvc repro`
must be a no-op, a forced re-run of the data stages must reproduce the flow's files byte for byte,
and a changed param must rerun only the stages downstream of it.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import build_tiny_project, sh

pytestmark = pytest.mark.slow

STAGES = [
    "lyrics-clean",
    "lyrics-tokenize",
    "lyrics-split",
    "lyrics-vocab",
    "lyrics-train",
    "lyrics-evaluate",
    "lyrics-register",
]
DATA_FILES = [
    "data/clean/lyrics.parquet",
    "data/tokens/lyrics.parquet",
    "data/split/lyrics.parquet",
    "data/vocab/lyrics.json",
]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("project")
    env = build_tiny_project(root)
    sh(["git", "init", "-q"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    return root, env


def test_flow_then_dvc(project):
    root, env = project
    out = sh([sys.executable, "-m", "flows.train_lyrics"], root, env)
    assert "test perplexity" in out.stdout
    metrics = json.loads((root / "reports/lyrics/metrics.json").read_text())
    assert metrics["test_perplexity"] > 1 and metrics["kneser_ney_perplexity"] > 1
    # both models are also reported without / with a cache of the recent text, on the same tokens
    assert metrics["test_perplexity_without_cache"] > 1 and metrics["kneser_ney_cache_perplexity"] > 1
    cache = torch.load(root / "models/lyrics/model.pt", weights_only=True)["cache"]
    assert set(cache) >= {"theta", "lam", "window"} and 0 <= cache["lam"] < 1
    assert metrics["cache_lambda"] == cache["lam"]
    registered = json.loads((root / "reports/lyrics/registered.json").read_text())
    assert registered["version"] == "1" and registered["promoted"]

    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run((json.loads((root / "models/lyrics/mlflow_run.json").read_text()))["run_id"])
    assert run.data.tags["prefect.flow_run_id"]  # the MLflow run knows its Prefect flow run
    assert "val_ppl" in run.data.metrics and "test_perplexity" in run.data.metrics
    assert "val_ppl_with_cache" in run.data.metrics and "cache.lam" in run.data.params
    assert len(client.get_metric_history(run.info.run_id, "val_ppl")) == 2  # one point per epoch
    mv = client.get_model_version_by_alias("lyrics-lm", "champion")
    assert mv.tags["prefect.flow_run_id"] == run.data.tags["prefect.flow_run_id"]

    # What `make run` does next: version the data; then DVC agrees nothing is stale.
    flow_md5 = {f: _md5(root / f) for f in DATA_FILES}
    sh(["dvc", "add", "-q", "data/raw/lyrics"], root, env)
    sh(["dvc", "commit", "-q", "-f", *STAGES], root, env)
    status = sh(["dvc", "status", *STAGES], root, env).stdout
    assert "up to date" in status, status

    # Same stage code under DVC gives byte-identical datasets.
    sh(["dvc", "repro", "-q", "-f", "-s", "lyrics-clean", "lyrics-tokenize", "lyrics-split", "lyrics-vocab"], root, env)
    assert {f: _md5(root / f) for f in DATA_FILES} == flow_md5

    # A changed evaluate param reruns evaluate and (its metrics changed) register, nothing upstream.
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["lyrics"]["evaluate"]["ngram_order"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    out = sh(["dvc", "repro"], root, env).stdout
    ran = {s for s in STAGES if f"Running stage '{s}'" in out}
    assert ran == {"lyrics-evaluate", "lyrics-register"}, out
    out = sh(["dvc", "repro"], root, env).stdout
    assert "Running stage" not in out  # nothing changed: a no-op
    assert "test_perplexity" in sh(["dvc", "metrics", "show"], root, env).stdout
    assert json.loads((root / "reports/lyrics/registered.json").read_text())["version"] == "2"


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()
