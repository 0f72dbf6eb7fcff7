"""The champion gate, and a real MLflow registry (SQLite in a temp folder) driven by the stages."""

import json
from pathlib import Path

import pytest

from tasks.common import tracking
from tasks.common.lineage import file_md5, git_commit
from tasks.common.params import params_hash
from tasks.common.registry import should_promote
from tests.helpers import tiny_lyrics_run

# --- should_promote -----------------------------------------------------------------------------


def champion(score="20.0", eval_set="abc", version="3"):
    return {"version": version, "score": score, "eval_set": eval_set}


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


def test_a_champion_of_another_test_set_is_never_ranked_on_its_old_score():
    # a far worse score on another test set is not a win by default...
    promote, reason = should_promote(999.0, "xyz", champion(eval_set="abc"), lower_is_better=True)
    assert not promote
    assert "could not be re-scored" in reason and "abc" in reason and "xyz" in reason
    # ...nor a far better one: only the champion re-scored on this test set ranks it
    assert should_promote(0.1, "xyz", champion(eval_set="abc"), lower_is_better=True)[0] is False


def test_a_champion_of_another_test_set_is_ranked_by_its_score_re_measured_on_this_one():
    promote, reason = should_promote(19.0, "xyz", champion(score="5.0", eval_set="abc"), True, rescored=21.0)
    assert promote and "beats champion v3's 21 re-scored on this test set" in reason
    promote, reason = should_promote(19.0, "xyz", champion(score="50.0", eval_set="abc"), True, rescored=18.0)
    assert not promote and "does not beat" in reason
    assert should_promote(19.0, "xyz", champion(eval_set="abc"), True, rescored=float("nan"))[0] is False


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("current", [None, champion()], ids=["no-champion", "champion"])
def test_a_score_that_is_not_a_finite_number_never_promotes(bad, current):
    for lower_is_better in (True, False):  # -inf would "beat" any perplexity, inf any F1
        promote, reason = should_promote(bad, "abc", current, lower_is_better=lower_is_better)
        assert not promote and "not a finite number" in reason


@pytest.mark.parametrize("tag", [None, "", "nan", "inf", "n/a"])
def test_a_champion_without_a_usable_score_is_replaced_and_the_reason_says_so(tag):
    promote, reason = should_promote(25.0, "abc", champion(score=tag), lower_is_better=True)
    assert promote
    assert "v3 has no usable score tag" in reason and repr(tag) in reason and "replaces it" in reason


def test_the_version_a_retry_reuses_keeps_the_alias_it_holds():
    promote, reason = should_promote(21.0, "abc", champion(), lower_is_better=True, new_version="3")
    assert promote and "already holds the alias" in reason
    # another version's retry is judged on its score as usual
    assert should_promote(21.0, "abc", champion(), lower_is_better=True, new_version="4")[0] is False


# --- the real registry --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """clean .. register once, via each stage's run(params), into an MLflow SQLite store in tmp."""
    from tasks import clean, evaluate, register, split, tokenize, train, vocab

    stages = (clean, tokenize, split, vocab, train, evaluate, register)
    with tiny_lyrics_run(tmp_path_factory.mktemp("registry"), stages) as (params, results):
        yield params, results


@pytest.fixture
def registry(pipeline, monkeypatch):
    """The module's registry with the metrics and run-id files restored after each test (tests
    below edit them to stand in for other training runs and evaluations); yields (params, client)."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params, _ = pipeline
    files = [Path(params.lyrics.evaluate.metrics), tracking.run_id_file(params.lyrics.train.output_dir)]
    saved = {f: f.read_bytes() for f in files}
    yield params, mlflow.MlflowClient(tracking_uri=params.tracking.uri)
    for f, content in saved.items():
        f.write_bytes(content)


def set_gate_score(params, value: float) -> None:
    """Stand in for another evaluation: the gate's score (bits per character) set to `value`."""
    path = Path(params.lyrics.evaluate.metrics)
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["test_bits_per_char"] = value
    path.write_text(json.dumps(metrics), encoding="utf-8")


def new_training_run(params) -> str:
    """Stand in for another training: a new MLflow run that the register stage reads as the pipeline's."""
    import mlflow

    tracking.configure(params)
    with mlflow.start_run() as run:
        pass
    tracking.save_run_id(params.lyrics.train.output_dir, run.info.run_id)
    return run.info.run_id


def versions(client, name: str, run_id: str | None = None) -> list:
    where = f"name = '{name}'" + (f" and run_id = '{run_id}'" if run_id else "")
    return client.search_model_versions(where)


def test_registry_alias_moves_only_on_improvement(pipeline, registry):
    import mlflow

    from tasks import register

    params, client = registry
    _, results = pipeline
    name, alias = params.lyrics.registry.model_name, params.lyrics.registry.alias
    metrics = results["evaluate"]
    first = results["register"]

    assert first["version"] == "1" and first["promoted"] is True
    assert first["model_uri"] == f"models:/{name}/1"
    assert json.loads(Path(params.lyrics.registry.output).read_text(encoding="utf-8")) == first
    mv = client.get_model_version_by_alias(name, alias)
    assert str(mv.version) == "1"
    tags = mv.tags
    assert tags["git_commit"] and tags["git_commit"] == git_commit()  # the code's repo, not the cwd's
    assert tags["params_hash"] == params_hash(params.lyrics)
    assert tags["eval_set_hash"] == metrics["eval_set_hash"]
    assert float(tags["score"]) == pytest.approx(metrics["test_bits_per_char"])
    assert tags["score_metric"] == "test_bits_per_char"
    assert tags["eval_text_hash"] == metrics["eval_text_hash"]
    assert tags["model_md5"] == file_md5(Path(params.lyrics.train.output_dir) / "model.pt")
    assert {"data.clean_md5", "data.split_md5", "data.vocab_md5"} <= set(tags)
    # the run that trained the model is the one the version comes from
    assert mv.run_id == results["train"]["run_id"]
    # its description is the model card, also in reports/ and in the run's artifacts
    card = (Path(params.lyrics.evaluate.output_dir) / "model_card.md").read_text(encoding="utf-8")
    assert mv.description == card and card.startswith(f"# {name} v1\n")
    assert "no champion yet" in card and "\nperplexity, model alone " in card and "## Generation" in card
    assert mlflow.artifacts.load_text(f"runs:/{mv.run_id}/model_card.md") == card

    worse = metrics["test_bits_per_char"] * 2
    set_gate_score(params, worse)
    new_training_run(params)
    second = register.run(params)
    assert second["version"] == "2" and second["promoted"] is False
    assert "does not beat" in second["reason"]
    assert str(client.get_model_version_by_alias(name, alias).version) == "1"
    assert float(client.get_model_version(name, "2").tags["score"]) == pytest.approx(worse)
    assert "**`champion` unchanged** (still v1)" in client.get_model_version(name, "2").description

    better = metrics["test_bits_per_char"] / 2
    set_gate_score(params, better)
    third_run = new_training_run(params)
    third = register.run(params)
    assert third["version"] == "3" and third["promoted"] is True
    champion_mv = client.get_model_version_by_alias(name, alias)
    assert str(champion_mv.version) == "3" and champion_mv.run_id == third_run
    assert float(champion_mv.tags["score"]) == pytest.approx(better)


def test_a_retried_register_reuses_the_version_of_its_training_run(registry):
    from tasks import register

    params, client = registry
    name = params.lyrics.registry.model_name
    run_id = new_training_run(params)
    set_gate_score(params, 1.0)  # beats every champion
    first = register.run(params)
    count = len(versions(client, name))
    again = register.run(params)  # the flow's retry, or `dvc repro` rerunning the stage
    assert again["version"] == first["version"] and again["promoted"] is True
    assert "already holds the alias" in again["reason"]
    assert len(versions(client, name)) == count and len(versions(client, name, run_id)) == 1
    # a re-evaluation of the same model (same run, same model.pt) updates the version's score tag
    set_gate_score(params, 0.5)
    assert register.run(params)["version"] == first["version"]
    assert float(client.get_model_version(name, first["version"]).tags["score"]) == 0.5


def test_a_register_that_failed_before_the_alias_moved_is_retried_without_a_duplicate(registry, monkeypatch):
    import mlflow

    from tasks import register

    params, client = registry
    name, alias = params.lyrics.registry.model_name, params.lyrics.registry.alias
    run_id = new_training_run(params)
    set_gate_score(params, 0.1)  # beats every champion
    before = len(versions(client, name))

    def locked(*args, **kwargs):
        raise mlflow.exceptions.MlflowException("(sqlite3.OperationalError) database is locked")

    with monkeypatch.context() as patch:
        patch.setattr(mlflow.MlflowClient, "set_registered_model_alias", locked)
        with pytest.raises(mlflow.exceptions.MlflowException, match="locked"):
            register.run(params)
    [created] = versions(client, name, run_id)  # the version exists, with every tag, but no alias yet
    assert created.tags["score"] == "0.1" and str(client.get_model_version_by_alias(name, alias).version) != str(
        created.version
    )
    retried = register.run(params)  # what the task's retry does
    assert retried["version"] == str(created.version) and retried["promoted"] is True
    assert "beats" in retried["reason"]
    assert len(versions(client, name)) == before + 1
    assert str(client.get_model_version_by_alias(name, alias).version) == str(created.version)


def test_a_champion_without_a_score_tag_is_replaced_with_the_reason_given(registry):
    from tasks import register

    params, client = registry
    name, alias = params.lyrics.registry.model_name, params.lyrics.registry.alias
    old = client.get_model_version_by_alias(name, alias)
    client.delete_model_version_tag(name, old.version, "score")  # e.g. a version aliased by hand
    set_gate_score(params, 1e6)  # far worse than anything: the gate cannot rank it, not "beats"
    new_training_run(params)
    result = register.run(params)  # used to raise float(None) after registering the version
    assert result["promoted"] is True
    assert f"champion v{old.version} has no usable score tag (None)" in result["reason"]
    assert "replaces it" in result["reason"]
    assert str(client.get_model_version_by_alias(name, alias).version) == result["version"]


def test_a_nan_score_is_registered_but_never_promoted_even_without_a_champion(registry, monkeypatch):
    from tasks import register

    params, client = registry
    monkeypatch.setattr(params.lyrics.registry, "model_name", "lyrics-lm-nan")  # a registry with no champion
    set_gate_score(params, float("nan"))
    result = register.run(params)
    assert result["version"] == "1" and result["promoted"] is False
    assert "not a finite number" in result["reason"]
    assert client.get_model_version("lyrics-lm-nan", "1").tags["score"] == "nan"
    assert not client.get_registered_model("lyrics-lm-nan").aliases  # no champion was made of it


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


def set_text_hash(params, value: str) -> None:
    """Stand in for an evaluation on another test text (another split or corpus)."""
    path = Path(params.lyrics.evaluate.metrics)
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["eval_text_hash"] = value
    path.write_text(json.dumps(metrics), encoding="utf-8")


def test_a_champion_scored_on_another_text_is_re_scored_on_this_one_before_it_is_ranked(registry):
    from tasks import register
    from tasks.lyrics.rescore import champion_bits_per_char

    params, client = registry
    name, alias = params.lyrics.registry.model_name, params.lyrics.registry.alias
    champion_version = str(client.get_model_version_by_alias(name, alias).version)
    # the champion, downloaded from the registry, on this split's test text
    rescored = champion_bits_per_char(params.lyrics, champion_version)
    assert 0 < rescored < 30
    set_text_hash(params, "another-text")
    set_gate_score(params, rescored * 1.1)  # worse than the champion on the same text (its old score is not used)
    new_training_run(params)
    worse = register.run(params)
    assert not worse["promoted"] and "re-scored on this test set" in worse["reason"]
    assert f"{rescored:.4g}" in worse["reason"]
    set_gate_score(params, rescored * 0.9)
    new_training_run(params)
    better = register.run(params)
    assert better["promoted"] and "beats" in better["reason"] and "re-scored" in better["reason"]
    assert str(client.get_model_version_by_alias(name, alias).version) == better["version"]
