"""The pipelines the stages serve, looked up in one place: task name → its package.

A task is a package under `tasks/` whose `__init__` states its few facts (no heavy imports) and
whose modules implement the stages it has, one module per stage with one function named after it:
`clean.clean(tp)`, `split.split(table, cfg, source)`, `train.train(...)`, `evaluate.evaluate(...)`,
`register.register(...)` (and `ingest.ingest(tp.input)` for a task that reads a labelled table). Adding a
task: a new package, its params section (tasks/common/params.py, params.yaml), its dvc.yaml
stages, and one line here.
"""

import importlib
from types import ModuleType

from tasks import lyrics, reviews
from tasks.common.errors import PipelineError

TASKS: dict[str, ModuleType] = {"lyrics": lyrics, "reviews": reviews}


def task_package(task: str) -> ModuleType:
    """The package of task `task`, or a one-line error naming the known ones."""
    try:
        return TASKS[task]
    except KeyError:
        raise PipelineError(f"unknown task {task!r}; use one of {', '.join(TASKS)}") from None


def implementation_name(task: str, stage: str) -> str:
    """The module that implements `stage` for `task`, e.g. `tasks.lyrics.train`."""
    package = task_package(task)
    if stage not in package.STAGES:
        raise PipelineError(f"task {task!r} has no {stage} stage (its stages: {', '.join(package.STAGES)})")
    return f"{package.__name__}.{stage}"


def stage_module(task: str, stage: str) -> ModuleType:
    """The task's implementation of `stage`, e.g. `tasks.lyrics.train`. Imported on demand so a
    stage loads only its own task's code (torch, MLflow and scikit-learn only where they are used)."""
    return importlib.import_module(implementation_name(task, stage))
