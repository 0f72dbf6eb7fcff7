"""dvc.yaml lists, for every stage, the task code that stage runs, so `dvc repro` reruns a stage
whose code changed (the Prefect cache hashes the same modules, flows/fingerprint.py)."""

import pytest
import yaml

from flows.fingerprint import StageSpec, stage_code
from tests.helpers import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def is_plumbing(path: str) -> bool:
    """Code every stage shares (params, CLI, IO, the catalog): left out of the deps, as dvc.yaml says."""
    return (
        path.startswith("tasks/common/") or path.endswith(("__init__.py", "/params.py")) or path == "tasks/catalog.py"
    )


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_module_a_stage_runs_is_a_dvc_dep(name):
    module = STAGES[name]["cmd"].split("-m ", 1)[1].split()[0]
    code = {p.relative_to(ROOT).as_posix() for p in stage_code(StageSpec(name, module, (), {}, ()))}
    missing = {path for path in code if not is_plumbing(path)} - set(STAGES[name]["deps"])
    assert not missing, f"dvc.yaml stage {name} runs these modules but does not list them in deps: {sorted(missing)}"
