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
    "pretrain",
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
    assert_metrics_are_the_saved_models(root, metrics)
    assert metrics["stopped_by"] == "epochs"  # no wall-clock budget by default: the 2 epochs ran
    registered = json.loads((root / "reports/lyrics/registered.json").read_text())
    assert registered["version"] == "1" and registered["promoted"]

    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.get_run((json.loads((root / "models/lyrics/mlflow_run.json").read_text()))["run_id"])
    assert run.data.tags["prefect.flow_run_id"]  # the MLflow run knows its Prefect flow run
    assert "val_ppl" in run.data.metrics and "test_perplexity" in run.data.metrics
    assert "val_ppl_with_cache" in run.data.metrics and "cache.lam" in run.data.params
    assert len(client.get_metric_history(run.info.run_id, "val_ppl")) == 2  # one point per epoch
    assert run.data.tags["stopped_by"] == "epochs"
    mv = client.get_model_version_by_alias("lyrics-lm", "champion")
    assert mv.tags["prefect.flow_run_id"] == run.data.tags["prefect.flow_run_id"]
    # The flow pretrained the base it fine-tuned from, and registered it
    base = torch.load(root / "models/pretrain/model.pt", weights_only=True)
    lyrics_itos = json.loads((root / "data/vocab/lyrics.json").read_text())["itos"]
    assert lyrics_itos[: len(base["itos"])] == base["itos"]
    assert run.data.params["base_model"] == "models/pretrain/model.pt"
    assert str(client.get_model_version_by_alias("zh-lm-base", "champion").version) == "1"

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
    # The same model from the same training run: register reuses its version, no duplicate.
    registered = json.loads((root / "reports/lyrics/registered.json").read_text())
    assert registered["version"] == "1" and "already holds the alias" in registered["reason"]
    assert len(client.search_model_versions("name = 'lyrics-lm'")) == 1


def assert_metrics_are_the_saved_models(root: Path, metrics: dict) -> None:
    """metrics.json against what it claims to measure: the saved model (with the cache fitted on
    validation) and the Kneser-Ney baseline on the test tokens, and a model that training improved."""
    from tasks.lyrics.batching import lm_stream
    from tasks.lyrics.kneser_ney import KneserNeyLM
    from tasks.lyrics.model import RNNLanguageModel
    from tasks.lyrics.neural_cache import fit_cache, perplexities
    from tasks.serving.lyrics_generator import load_checkpoint
    from tasks.text.vocab import tokens_by_split

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))["lyrics"]
    model, vocab, _ = load_checkpoint(root / "models/lyrics/model.pt")
    splits = tokens_by_split(root / params["split"]["output"])
    train, val, test = (lm_stream(splits[s], vocab) for s in ("train", "val", "test"))  # (N,) each
    # The cache is the grid's best on validation for this model (lam 0 when it does not help there)
    refit = fit_cache(model, val)
    assert {k: model.cache[k] for k in ("theta", "lam", "window")} == {k: refit[k] for k in ("theta", "lam", "window")}
    assert metrics["cache_lambda"] == model.cache["lam"]
    # The headline numbers are this model's on the test tokens, without and with its cache...
    alone, with_cache = perplexities(model, test, model.cache)
    assert metrics["test_perplexity"] == pytest.approx(alone, rel=1e-5)  # the headline: the model alone
    assert metrics["test_perplexity_with_cache"] == pytest.approx(with_cache, rel=1e-5)
    # ...beside Kneser-Ney fitted on the train split and scored on the same tokens
    kn = KneserNeyLM(params["evaluate"]["ngram_order"]).fit(train.tolist(), len(vocab))
    assert metrics["kneser_ney_perplexity"] == pytest.approx(kn.perplexity(test.tolist()), rel=1e-9)
    assert metrics["kneser_ney_perplexity"] < len(vocab)  # the baseline beats the uniform guess
    # Training lowered the perplexity: below the same model at its initial weights (the train stage
    # seeds before building it) and below the uniform guess over the vocabulary.
    torch.manual_seed(params["train"]["seed"])
    untrained = RNNLanguageModel(**torch.load(root / "models/lyrics/model.pt", weights_only=True)["model_args"])
    assert alone < 0.95 * min(perplexities(untrained, test, None)[0], len(vocab))


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()
