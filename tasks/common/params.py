"""Load params.yaml, apply `key.path=value` overrides, and validate every value up front.

Validation happens before any stage touches data, so a typo such as `model.cell: lstn` fails in
a second with the key named, not after ten minutes of training.

params.yaml is the single source of every value and of the comments that explain them: the models
below check types and ranges only, with no defaults to drift from the file, so a missing key is an
error naming it. Tests and notebooks build one section from the file with `section_from_yaml`.
The section models live beside what they configure: tasks/common/sections.py (shared stages and
the project), tasks/<task>/params.py (each task's own).
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tasks import catalog
from tasks.common.errors import PipelineError
from tasks.common.sections import Orchestration, Sweep, Tracking
from tasks.lyrics.params import LyricsParams
from tasks.pretraining.params import PretrainParams
from tasks.reviews.params import ReviewsParams

SHIPPED_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"

TASKS = tuple(catalog.TASKS)  # the task names, in catalog order (the CLIs' --task choices)


class Params(BaseModel):
    model_config = ConfigDict(extra="allow")  # other sections are validated by their own models
    tracking: Tracking
    orchestration: Orchestration
    # A file may leave out a whole task (a project that trains one); a present one is validated in full.
    lyrics: LyricsParams | None = None
    reviews: ReviewsParams | None = None
    pretrain: PretrainParams | None = None  # the general-Chinese base model the lyrics model fine-tunes from
    sweep: Sweep  # flows/sweep.py; required like every section (none has a default)


def task_section(params: Params, task: str):
    """The params section of one task (`lyrics` / `reviews`), or a one-line error when it is absent."""
    catalog.task_package(task)  # an unknown task: a one-line error naming the known ones
    section = getattr(params, task)
    if section is None:
        raise PipelineError(f"params.yaml has no `{task}:` section; add it (see README, Parameters)")
    return section


def base_model_of(tp) -> str | None:
    """The pretrained base a task's section fine-tunes from (`<task>.base_model`), or None: no base
    set, or a task whose `train.init` chooses another start (reviews: ppmi | random)."""
    if getattr(tp.train, "init", "pretrained") != "pretrained":
        return None
    return getattr(tp, "base_model", None)


def tracking_store(params: Params) -> str:
    """The MLflow store a run logs to: MLFLOW_TRACKING_URI when set, else `tracking.uri`. The one
    rule the stages, the stage cache's fingerprint and the CLIs share."""
    return os.environ.get("MLFLOW_TRACKING_URI") or params.tracking.uri


def experiment_name(params: Params, task: str = "lyrics") -> str:
    """The MLflow experiment of a task: `tracking.experiment` for lyrics; a task section's own
    `experiment` (reviews) wins for its task. Here, not in tasks.tracking, so that naming it does
    not import MLflow."""
    return getattr(getattr(params, task, None), "experiment", None) or params.tracking.experiment


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Set dotted keys (`lyrics.model.cell`) in a nested dict; string values are parsed as YAML."""
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise PipelineError(f"override {dotted}: no section {key!r} in params; check the key")
            node = node[key]
        node[leaf] = yaml.safe_load(value) if isinstance(value, str) else value
    return raw


def parse_set_args(pairs: list[str] | None) -> dict[str, str]:
    """`["a.b=1", "c=x"]` (the CLI's repeated --set) → {"a.b": "1", "c": "x"}."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise PipelineError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set lyrics.model.cell=gru")
        out[key.strip()] = value
    return out


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise PipelineError(f"{path}: params file not found; run from the project root or pass --params PATH")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from exc


def _one_line(path: Path, exc: ValidationError, shown: int = 3) -> str:
    """The first few validation errors as one line, each naming its dotted key."""
    parts = []
    for err in exc.errors()[:shown]:
        key = ".".join(str(p) for p in err["loc"])
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        what = {"missing": "missing", "extra_forbidden": f"unknown key{got}"}.get(err["type"], f"{err['msg']}{got}")
        parts.append(f"{key}: {what}")
    n, missing = exc.error_count(), sum(e["type"] == "missing" for e in exc.errors())
    more = f" (and {n - shown} more)" if n > shown else ""
    fix = f"add {'it' if n == 1 else 'them'} to" if missing == n else f"fix {'this key' if n == 1 else 'these keys'} in"
    why = " (every key is required; none has a default)" if missing else ""
    return f"{path}: {'; '.join(parts)}{more}; {fix} params.yaml{why}"


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    path = Path(path)
    raw = apply_overrides(_read_yaml(path), overrides or {})
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise PipelineError(_one_line(path, exc)) from exc


S = TypeVar("S", bound=BaseModel)


def section_from_yaml(model_cls: type[S], key: str, /, params_file: str | Path = SHIPPED_PARAMS, **overrides) -> S:
    """Section `key` (e.g. `lyrics.train`) of a params file (default: the project's params.yaml,
    wherever the working directory is) with `overrides` on top, validated as `model_cls`; a bad
    value raises pydantic's ValidationError. For code that needs one section: tests, notebooks."""
    node: Any = _read_yaml(Path(params_file))
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        raise PipelineError(f"{params_file}: no section {key!r}; check the key")
    return model_cls.model_validate({**node, **overrides})


def params_hash(section: BaseModel, exclude: set[str] | None = None) -> str:
    """Stable hash of a params section, for lineage tags and resume checks; `exclude`: fields that
    do not change the result (where files go, which device)."""
    blob = json.dumps(section.model_dump(exclude=exclude), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
