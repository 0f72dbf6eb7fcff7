"""Stage fingerprints: what a stage reads (input files, params, code) and what it writes, as hashes.

dvc.yaml is the one list of each stage's deps, params keys and outs; this module reads it, with
`${...}` filled in from the params actually in use (so `--set` overrides move paths too), and adds
the stage module's own code and every `tasks.*` module it imports. Orchestrators use it to skip a
stage whose inputs, params and code are unchanged and whose outputs are still the ones it wrote.

Files are hashed whenever asked for, with no cache: a flow run hashes each artifact two or three
times (as one stage's output, the next one's input), about 3 ms per MB, which a cache kept across
calls would save at the price of state outliving the run.
"""

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tasks.catalog import TASKS, implementation_name
from tasks.common import lineage
from tasks.common.errors import PipelineError
from tasks.common.params import tracking_store

TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks"  # the `tasks` package whose code is hashed
_VAR = re.compile(r"\$\{\s*([\w.]+)\s*\}")


@dataclass(frozen=True)
class StageSpec:
    name: str  # the dvc.yaml stage, e.g. `lyrics-train`
    module: str  # what its cmd runs, e.g. `tasks.train`
    deps: tuple[str, ...]  # files and folders it reads (data and code)
    params: dict  # the params keys it reads → their values
    outs: tuple[str, ...]  # outs, metrics and plots it writes


def _lookup(tree: dict, dotted: str):
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise PipelineError(f"dvc.yaml: ${{{dotted}}} is not a params key; fix dvc.yaml or params.yaml")
        node = node[key]
    return node


def _fill(text: str, tree: dict) -> str:
    return _VAR.sub(lambda m: str(_lookup(tree, m.group(1))), text)


def _paths(entries: list | None, tree: dict) -> list[str]:
    """dvc.yaml lists entries as `path` or `{path: {options}}`."""
    return [_fill(next(iter(e)) if isinstance(e, dict) else e, tree) for e in entries or []]


def stage_spec(params, stage: str, dvc_yaml: str | Path = "dvc.yaml") -> StageSpec:
    """The dvc.yaml stage `stage` resolved against `params` (a tasks.params.Params)."""
    path = Path(dvc_yaml)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run from the project root (stage caching reads its stages)")
    stages = yaml.safe_load(path.read_text(encoding="utf-8")).get("stages", {})
    if stage not in stages:
        raise PipelineError(f"{path}: no stage {stage!r}; add it or check the task name")
    spec = stages[stage]
    tree = params.model_dump(by_alias=True, mode="json")
    module = re.search(r"-m\s+([\w.]+)", spec["cmd"])
    keys = [
        k
        for entry in spec.get("params", [])
        for k in ([entry] if isinstance(entry, str) else next(iter(entry.values())))
    ]
    values = {key: _lookup(tree, key) for key in keys}
    if "tracking" in values:
        # The store the run goes to, as the stages resolve it: a run in another store is not this one.
        values["tracking"] = {**values["tracking"], "uri": tracking_store(params)}
    outs = _paths(spec.get("outs"), tree) + _paths(spec.get("metrics"), tree) + _paths(spec.get("plots"), tree)
    return StageSpec(
        stage, module.group(1) if module else "", tuple(_paths(spec.get("deps"), tree)), values, tuple(outs)
    )


def path_hash(path: str | Path) -> str | None:
    """md5 of a file, or of a folder's (relative path, md5) list; None when it does not exist."""
    path = Path(path)
    if path.is_file():
        return lineage.file_md5(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        listing = [(p.relative_to(path).as_posix(), lineage.file_md5(p)) for p in files]
        return hashlib.md5(json.dumps(listing).encode()).hexdigest()
    return None


def module_files(module: str) -> list[Path]:
    """The file of `tasks.<name>` and of every `tasks.*` module it imports, transitively (a
    package counts as its `__init__.py`)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or not name.startswith("tasks."):
            continue
        base = TASKS_DIR.parent / name.replace(".", "/")
        file = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if not file.is_file():
            continue
        seen[name] = file
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                todo.append(node.module)
                todo += [f"{node.module}.{a.name}" for a in node.names]  # `from tasks import clean`
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
    return sorted(seen.values())


def stage_code(spec: StageSpec) -> list[Path]:
    """The stage module's files and those of the task's implementation of it, which the stage
    imports by name through tasks/catalog.py (e.g. `lyrics-train` → tasks.lyrics.train)."""
    task, _, stage = spec.name.partition("-")
    files = set(module_files(spec.module))
    if task in TASKS and stage in TASKS[task].STAGES:
        files.update(module_files(implementation_name(task, stage)))
    return sorted(files)


def fingerprint(spec: StageSpec) -> str:
    """Hash of everything the stage reads: input files, params values and code."""
    blob = {
        "stage": spec.name,
        "deps": {d: path_hash(d) for d in spec.deps},
        "params": spec.params,
        "code": {p.relative_to(TASKS_DIR.parent).as_posix(): lineage.file_md5(p) for p in stage_code(spec)},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def outputs_state(spec: StageSpec) -> dict[str, str | None]:
    """Each output's hash (None where it is missing)."""
    return {out: path_hash(out) for out in spec.outs}
