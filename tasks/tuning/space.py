"""The search space of params.yaml `sweep.<task>.space`, checked against the task's params before
any trial runs, and turned into Optuna distributions. Every check fails as one line naming the key
and params.yaml: a sweep that would break at its fifth trial should break before its first."""

import hashlib
import json
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from tasks.common.errors import PipelineError
from tasks.common.lineage import file_md5
from tasks.common.params import Params, load_params, task_section
from tasks.common.sections import CategoricalDimension, Dimension, FloatDimension, SweepTask

# What the sweep itself sets for every trial (its epochs cap, its own folders): not tunable.
SWEEP_OWNED = ("train.epochs", "train.output_dir", "train.history", "train.checkpoint_dir")
SWEEP_OWNED += ("evaluate.output_dir", "evaluate.metrics")


def sweep_spec(params: Params, task: str) -> SweepTask:
    """params.sweep.<task>: the task's epochs cap, metric, direction and space."""
    task_section(params, task)  # an unknown or absent task: its one-line error
    return getattr(params.sweep, task)


def value_at(tree: dict, dotted: str) -> Any:
    """The value of a dotted key in a nested dict; KeyError when it is not a leaf there."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    if isinstance(node, dict):
        raise KeyError(dotted)  # a whole section: not one value
    return node


def check_space(params: Params, task: str, params_file: str, overrides: dict) -> SweepTask:
    """The task's sweep spec once every key names a leaf of the task's params, none twice nor one
    the sweep sets itself, ranges are ordered, and each end of a range and each choice validates."""
    spec = sweep_spec(params, task)
    where = f"{params_file}: sweep.{task}.space"
    current, seen = params.model_dump(by_alias=True), set()
    for dim in spec.space:
        relative = dim.key.removeprefix(f"{task}.")
        if not dim.key.startswith(f"{task}.") or relative in SWEEP_OWNED:
            owned = f"the sweep sets {dim.key}" if relative in SWEEP_OWNED else f"{dim.key} is not a {task} key"
            raise PipelineError(f"{where}: {owned}; list keys of {task}'s own params (e.g. {task}.train.lr)")
        try:
            value_at(current, dim.key)
        except KeyError:
            raise PipelineError(f"{where}: {dim.key} is not a key of the {task} params; fix the key") from None
        if dim.key in seen:
            raise PipelineError(f"{where}: {dim.key} is listed twice; keep one entry")
        seen.add(dim.key)
        check_bounds(dim, where)
        check_values(dim, where, params_file, overrides)
    return spec


def check_values(dim: Dimension, where: str, params_file: str, overrides: dict) -> None:
    """Both ends of a range and every choice must pass the params' own validation."""
    for value in candidates(dim):
        try:
            load_params(params_file, {**overrides, dim.key: value})
        except PipelineError as exc:  # "<file>: <key>: <what>; fix ...": keep <key>: <what>
            reason = str(exc).removeprefix(f"{params_file}: ").rsplit("; ", 1)[0]
            raise PipelineError(
                f"{where}: {dim.key}={value!r} is not a valid value ({reason}); fix the range or choices"
            ) from None


def check_bounds(dim: Dimension, where: str) -> None:
    if isinstance(dim, CategoricalDimension):
        return
    if not dim.low < dim.high:
        raise PipelineError(f"{where}: {dim.key}: low {dim.low} must be below high {dim.high}; fix the range")
    if dim.log and dim.low <= 0:
        raise PipelineError(f"{where}: {dim.key}: log: true needs low > 0 (got {dim.low}); raise low or set log: false")


def candidates(dim: Dimension) -> list:
    """The values that bound what a trial may draw: both ends of a range, every choice."""
    return list(dim.choices) if isinstance(dim, CategoricalDimension) else [dim.low, dim.high]


def distributions(spec: SweepTask) -> dict[str, BaseDistribution]:
    """{params key: Optuna distribution}: what `study.ask` samples for every trial up front, so a
    trial's values are known before it is submitted (to a Dask worker, say)."""
    out: dict[str, BaseDistribution] = {}
    for dim in spec.space:
        if isinstance(dim, CategoricalDimension):
            out[dim.key] = CategoricalDistribution(dim.choices)
        elif isinstance(dim, FloatDimension):
            out[dim.key] = FloatDistribution(dim.low, dim.high, log=dim.log)
        else:
            out[dim.key] = IntDistribution(dim.low, dim.high, log=dim.log)
    return out


def defaults_of(params: Params, spec: SweepTask) -> tuple[dict[str, Any], list[str]]:
    """The params' own values of the space's keys (queued as the first trial, so the table has the
    defaults under the sweep's epochs cap), and the keys whose value lies outside the space."""
    current, values, outside = params.model_dump(by_alias=True), {}, []
    for key, dist in distributions(spec).items():
        value = value_at(current, key)
        if isinstance(dist, CategoricalDistribution):
            inside = value in dist.choices
        else:
            inside = isinstance(value, int | float) and not isinstance(value, bool) and dist.low <= value <= dist.high
        values[key] = value
        if not inside:
            outside.append(f"{key}={value!r}")
    return values, outside


def study_name(params: Params, task: str) -> str:
    """`<task>-<hash>` of what a trial's score depends on: the space, epochs cap and metric, the
    task's params other than evaluate and register, and the split and vocabulary the data stages
    wrote (so call it after them). The same sweep finds its study again (and resumes it); a changed
    one, or one on other data, starts a new study in the same storage."""
    spec = sweep_spec(params, task)
    tp = task_section(params, task)
    data = {path: file_md5(path) for path in (tp.split.output, tp.vocab.output) if Path(path).is_file()}
    blob = json.dumps(
        {"sweep": spec.model_dump(), "task": tp.model_dump(exclude={"evaluate", "registry"}), "data": data},
        sort_keys=True,
        ensure_ascii=False,
    )
    return f"{task}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"
