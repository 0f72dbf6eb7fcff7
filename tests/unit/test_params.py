"""params.yaml is the single source of every value: the shipped file validates, no section model
has a default to drift from it, a key missing from the file is a one-line error naming it, an
unknown key is still rejected, and the CLIs' defaults (store, model URIs) are read from it."""

import typing

import pytest
import yaml
from pydantic import BaseModel, Field, ValidationError

from tasks import catalog
from tasks.common import params as P
from tasks.common.errors import PipelineError
from tasks.common.params import SHIPPED_PARAMS, Params, load_params, section_from_yaml, task_section
from tasks.common.sections import RNN, Clean, Positive, Section, SplitFraction, Stage, TrainLoop
from tasks.lyrics.params import Model, Train
from tasks.reviews.params import ReviewsInput

# A file may leave out a whole task; everything else must come from the file.
# A project may leave out a whole task, or the pretraining section when no task fine-tunes a base.
OPTIONAL_TASK_SECTIONS = {(Params, "lyrics"), (Params, "reviews"), (Params, "pretrain")}


def shipped() -> dict:
    return yaml.safe_load(SHIPPED_PARAMS.read_text(encoding="utf-8"))


def leaf_keys(node: dict, prefix: str = "") -> list[str]:
    """Every dotted key of a params dict whose value is not a section (lists and nulls included)."""
    keys = []
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        keys += leaf_keys(value, f"{dotted}.") if isinstance(value, dict) else [dotted]
    return keys


def drop(raw: dict, dotted: str) -> dict:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node[key]
    del node[leaf]
    return raw


def models_in(annotation) -> list[type[BaseModel]]:
    """The pydantic models an annotation names, through unions, Optional, Annotated and lists."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def walk_fields(model: type[BaseModel], seen: set) -> list[tuple[type[BaseModel], str, object]]:
    """(model, field name, FieldInfo) of `model` and of every model its fields name, recursively."""
    if model in seen:
        return []
    seen.add(model)
    out = []
    for name, field in model.model_fields.items():
        out.append((model, name, field))
        for sub in models_in(field.annotation):
            out += walk_fields(sub, seen)
    return out


def subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]


def write(tmp_path, raw: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


# --- (a) the shipped file ------------------------------------------------------------------------


def test_shipped_params_validate_with_every_task():
    params = load_params(SHIPPED_PARAMS)
    for task in catalog.TASKS:
        assert task_section(params, task) is not None
    assert params.lyrics.model.embedding_size == params.lyrics.model.hidden_size  # null: the validator's fill


def test_every_catalog_task_has_a_params_section_model():
    assert set(catalog.TASKS) <= set(Params.model_fields)
    assert tuple(catalog.TASKS) == P.TASKS
    with pytest.raises(PipelineError, match="unknown task 'poems'.*lyrics, reviews"):
        task_section(load_params(SHIPPED_PARAMS), "poems")


# --- (b) no defaults -----------------------------------------------------------------------------


def test_no_section_field_has_a_default():
    seen: set = set()
    fields = walk_fields(Params, seen)
    with_default = [
        f"{model.__name__}.{name} (default {field.get_default(call_default_factory=True)!r})"
        for model, name, field in fields
        if not field.is_required() and (model, name) not in OPTIONAL_TASK_SECTIONS
    ]
    assert not with_default, f"params.yaml is the one source of values; remove these defaults: {with_default}"
    for model, name in OPTIONAL_TASK_SECTIONS:  # absent task: None, not a default section
        assert model.model_fields[name].default is None
    # The walk reached every section model there is (a subclass of Section, in whichever module),
    # so a new one cannot slip past it; bases that no params key names are not sections themselves.
    sections = set(subclasses(Section)) - {Clean, RNN, SplitFraction, Stage, TrainLoop}
    assert sections <= seen, sections - seen


def test_walk_would_catch_a_reintroduced_default():
    """The check above is not vacuous: a section with a default, however spelled, is reported."""

    class WithDefault(Section):
        lr: Positive = 0.002

    class WithFactory(Section):
        starts: list[str] = Field(default_factory=lambda: ["分手"])

    class Outer(BaseModel):
        train: WithDefault | None = None  # an optional sub-section is a default too (None)
        evaluate: list[WithFactory]

    fields = walk_fields(Outer, set())
    assert {(m.__name__, n) for m, n, f in fields if not f.is_required()} == {
        ("Outer", "train"),
        ("WithDefault", "lr"),
        ("WithFactory", "starts"),
    }


# --- (c) a missing key ---------------------------------------------------------------------------


def test_missing_key_is_one_line_naming_it(tmp_path):
    path = write(tmp_path, drop(shipped(), "lyrics.train.lr"))
    with pytest.raises(PipelineError) as exc:
        load_params(path)
    assert str(exc.value) == (
        f"{path}: lyrics.train.lr: missing; add it to params.yaml (every key is required; none has a default)"
    )


def test_every_key_of_the_shipped_file_is_required(tmp_path):
    """Drop each key of params.yaml in turn: each must fail, in one line that names it."""
    keys = leaf_keys(shipped())
    assert len(keys) > 100 and "lyrics.model.embedding_size" in keys and "orchestration.dask_address" in keys
    not_required = []
    for key in keys:
        try:
            load_params(write(tmp_path, drop(shipped(), key)))
        except PipelineError as exc:
            message = str(exc)
            assert "\n" not in message and f"{key}: missing" in message, message
        else:
            not_required.append(key)
    assert not not_required, f"keys params.yaml may leave out (a default crept back?): {not_required}"


def test_missing_sections_and_several_keys_are_named(tmp_path):
    for section in ("tracking", "orchestration", "lyrics.register", "reviews.evaluate"):
        with pytest.raises(PipelineError, match=rf": {section}: missing; add it to params.yaml"):
            load_params(write(tmp_path, drop(shipped(), section)))
    raw = shipped()
    for key in ("lr", "clip", "bptt", "epochs"):
        drop(raw, f"lyrics.train.{key}")
    with pytest.raises(PipelineError) as exc:
        load_params(write(tmp_path, raw))
    message = str(exc.value)
    assert "\n" not in message and "(and 1 more); add them to params.yaml" in message
    assert sum(f"lyrics.train.{k}: missing" in message for k in ("lr", "clip", "bptt", "epochs")) == 3


def test_whole_task_may_be_absent(tmp_path):
    raw = shipped()
    del raw["reviews"]
    params = load_params(write(tmp_path, raw))
    assert params.reviews is None
    with pytest.raises(PipelineError, match="no `reviews:` section"):
        task_section(params, "reviews")


# --- (d) unknown keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["lyrics.train.lrr", "tracking.urii", "orchestration.workers", "reviews.foo"])
def test_unknown_key_is_rejected(tmp_path, key):
    raw = shipped()
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node[part]
    node[leaf] = 3
    with pytest.raises(PipelineError) as exc:
        load_params(write(tmp_path, raw))
    assert str(exc.value) == f"{tmp_path / 'params.yaml'}: {key}: unknown key (got 3); fix this key in params.yaml"


def test_typo_names_both_the_unknown_and_the_missing_key(tmp_path):
    raw = shipped()
    raw["lyrics"]["clean"]["min_char"] = raw["lyrics"]["clean"].pop("min_chars")
    with pytest.raises(PipelineError) as exc:
        load_params(write(tmp_path, raw))
    message = str(exc.value)
    assert "lyrics.clean.min_chars: missing" in message and "lyrics.clean.min_char: unknown key (got 2)" in message


# --- section_from_yaml ---------------------------------------------------------------------------


def test_section_from_yaml_is_the_shipped_section_with_overrides(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the project's params.yaml, whatever the working directory
    cfg = section_from_yaml(Train, "lyrics.train", lr=0.02)
    assert cfg.lr == 0.02 and cfg.epochs == shipped()["lyrics"]["train"]["epochs"]
    model = section_from_yaml(Model, "lyrics.model", hidden_size=32)
    assert model.embedding_size == 32  # the validator still fills a null embedding_size
    path = section_from_yaml(ReviewsInput, "reviews.input", path="x.csv").path  # a field named like a param
    assert path == "x.csv"


def test_section_from_yaml_validates(tmp_path):
    with pytest.raises(ValidationError, match="lrr"):
        section_from_yaml(Train, "lyrics.train", lrr=0.1)
    with pytest.raises(ValidationError, match="greater than 0"):
        section_from_yaml(Train, "lyrics.train", lr=0)
    with pytest.raises(PipelineError, match="no section 'lyrics.nosuch'"):
        section_from_yaml(Train, "lyrics.nosuch")
    with pytest.raises(PipelineError, match="no section 'lyrics.train.lr'"):
        section_from_yaml(Train, "lyrics.train.lr")
    raw = drop(shipped(), "lyrics.train.clip")
    with pytest.raises(ValidationError, match="clip"):
        section_from_yaml(Train, "lyrics.train", params_file=write(tmp_path, raw))


# --- the CLIs' defaults --------------------------------------------------------------------------


def test_cli_defaults_come_from_params(tmp_path, monkeypatch):
    from tasks.serving.model_uri import champion_uri, tracking_uri

    raw = shipped()
    raw["reviews"]["register"].update(model_name="my-sentiment", alias="prod")
    raw["tracking"]["uri"] = "sqlite:///elsewhere.db"
    monkeypatch.chdir(tmp_path)
    write(tmp_path, raw)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert champion_uri("reviews") == "models:/my-sentiment@prod"
    assert champion_uri("lyrics") == "models:/lyrics-lm@champion"
    assert tracking_uri() == "sqlite:///elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000"


def test_cli_defaults_without_params_are_one_line_errors(tmp_path, monkeypatch):
    from tasks.serving.model_uri import champion_uri, tracking_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(PipelineError, match="--model URI"):
        champion_uri("lyrics")
    with pytest.raises(PipelineError, match="MLFLOW_TRACKING_URI is not set"):
        tracking_uri()
    assert not (tmp_path / "mlflow.db").exists()  # no stray store created in the working directory


def test_no_module_hard_codes_a_registered_model_or_store():
    """Names and the store live in params.yaml; the CLIs and the loader read them from there."""
    root = SHIPPED_PARAMS.parent
    for rel in ("tasks/generate.py", "tasks/predict.py", "tasks/serving/model_uri.py", "tasks/common/params.py"):
        code = (root / rel).read_text(encoding="utf-8")
        assert "@champion" not in code and "sqlite:///" not in code, rel
