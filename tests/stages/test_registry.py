"""The champion gate, and a real MLflow registry (SQLite in a temp folder) driven by the stages."""

import json
from pathlib import Path

import pytest

from tasks.common.lineage import git_commit
from tasks.common.params import params_hash
from tasks.common.registry import should_promote
from tests.helpers import tiny_lyrics_run

# --- should_promote -----------------------------------------------------------------------------


def champion(score="20.0", eval_set="abc", version="3"):
    return {"version": version, "score": score, "eval_set_hash": eval_set}


def test_no_champion_promotes():
    promote, reason = should_promote(50.0, "abc", None, lower_is_better=True)
    assert promote and "no champion" in reason


def test_lower_perplexity_on_same_eval_set_promotes():
    promote, reason = should_promote(19.5, "abc", champion(), lower_is_better=True)
    assert promote
    assert "beats" in reason and "v3" in reason


def test_higher_perplexity_on_same_eval_set_does_not_promote():
    promote, reason = should_promote(20.5, "abc", champion(), lower_is_better=True)
    assert not promote
    assert "does not beat" in reason


def test_equal_score_does_not_promote():
    assert should_promote(20.0, "abc", champion(), lower_is_better=True)[0] is False


def test_higher_is_better_metrics():
    assert should_promote(0.9, "abc", champion(score="0.8"), lower_is_better=False)[0] is True
    assert should_promote(0.7, "abc", champion(score="0.8"), lower_is_better=False)[0] is False


def test_other_eval_set_promotes_as_not_comparable():
    promote, reason = should_promote(999.0, "xyz", champion(eval_set="abc"), lower_is_better=True)
    assert promote
    assert "not comparable" in reason
    assert "abc" in reason and "xyz" in reason


# --- the real registry --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """clean .. register once, via each stage's run(params), into an MLflow SQLite store in tmp."""
    from tasks import clean, evaluate, register, split, tokenize, train, vocab

    stages = (clean, tokenize, split, vocab, train, evaluate, register)
    with tiny_lyrics_run(tmp_path_factory.mktemp("registry"), stages) as (params, results):
        yield params, results


def set_test_perplexity(params, value: float) -> None:
    path = Path(params.lyrics.evaluate.metrics)
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["test_perplexity"] = value
    path.write_text(json.dumps(metrics), encoding="utf-8")


def test_registry_alias_moves_only_on_improvement(pipeline, monkeypatch):
    import mlflow

    from tasks import register

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params, results = pipeline
    name, alias = params.lyrics.registry.model_name, params.lyrics.registry.alias
    client = mlflow.MlflowClient(tracking_uri=params.tracking.uri)
    metrics = results["evaluate"]
    first = results["register"]

    assert first["version"] == "1" and first["promoted"] is True
    assert json.loads(Path(params.lyrics.registry.output).read_text(encoding="utf-8")) == first
    mv = client.get_model_version_by_alias(name, alias)
    assert str(mv.version) == "1"
    tags = mv.tags
    assert tags["git_commit"] and tags["git_commit"] == git_commit()  # the code's repo, not the cwd's
    assert tags["params_hash"] == params_hash(params.lyrics)
    assert tags["eval_set_hash"] == metrics["eval_set_hash"]
    assert float(tags["score"]) == pytest.approx(metrics["test_perplexity"])
    assert tags["score_metric"] == "test_perplexity"
    assert {"data.clean_md5", "data.split_md5", "data.vocab_md5"} <= set(tags)
    # the run that trained the model is the one the version comes from
    assert mv.run_id == results["train"]["run_id"]

    worse = metrics["test_perplexity"] * 2
    set_test_perplexity(params, worse)
    second = register.run(params)
    assert second["version"] == "2" and second["promoted"] is False
    assert "does not beat" in second["reason"]
    assert str(client.get_model_version_by_alias(name, alias).version) == "1"
    assert float(client.get_model_version(name, "2").tags["score"]) == pytest.approx(worse)

    better = metrics["test_perplexity"] / 2
    set_test_perplexity(params, better)
    third = register.run(params)
    assert third["version"] == "3" and third["promoted"] is True
    champion_mv = client.get_model_version_by_alias(name, alias)
    assert str(champion_mv.version) == "3"
    assert float(champion_mv.tags["score"]) == pytest.approx(better)


def test_champion_loads_as_pyfunc_and_generates(pipeline, monkeypatch):
    import mlflow
    import pandas as pd

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params, _ = pipeline
    mlflow.set_tracking_uri(params.tracking.uri)
    model = mlflow.pyfunc.load_model(f"models:/{params.lyrics.registry.model_name}@champion")
    out = model.predict(pd.DataFrame({"start": ["天空"]}), params={"length": 5, "seed": 1})
    assert isinstance(out, pd.DataFrame)
    assert list(out["start"]) == ["天空"]
    lyrics = out["lyrics"].iloc[0]
    assert isinstance(lyrics, str) and lyrics.startswith("天空") and len(lyrics) > len("天空")
    again = model.predict(pd.DataFrame({"start": ["天空"]}), params={"length": 5, "seed": 1})
    assert again["lyrics"].iloc[0] == lyrics  # a seed makes serving reproducible
