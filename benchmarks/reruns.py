"""No-op reruns: the Prefect flow and `dvc repro` with nothing changed, each against the full run."""

import time
from pathlib import Path

from benchmarks.report import Measure
from benchmarks.scratch import run

LYRICS_STAGES = [
    "lyrics-clean",
    "lyrics-tokenize",
    "lyrics-split",
    "lyrics-vocab",
    "lyrics-train",
    "lyrics-evaluate",
    "lyrics-register",
]


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    run(cmd, cwd, env)
    return time.perf_counter() - t0


def measure(project: Path, env: dict) -> list[Measure]:
    """Full flow run, the same flow again, then (after versioning the outputs as `make run` does)
    `dvc repro` twice: the first may re-hash, the second is the no-op figure."""
    flow = ["python", "-m", "flows.train_lyrics"]
    full = timed(flow, project, env)
    cached = timed(flow, project, env)
    run(["dvc", "add", "-q", "data/raw/lyrics"], project, env)
    run(["dvc", "commit", "-q", "-f", *LYRICS_STAGES], project, env)
    timed(["dvc", "repro"], project, env)
    noop = timed(["dvc", "repro"], project, env)
    return [
        Measure(
            "prefect_flow_noop_rerun",
            cached,
            "s",
            "first full flow run",
            full,
            "python -m flows.train_lyrics (twice, nothing changed)",
            target="≤ 30 s incl. Prefect start",
            met=cached <= 30,
            note="wall time of the second run, Prefect's ephemeral API start included",
        ),
        Measure(
            "dvc_repro_noop",
            noop,
            "s",
            "first full flow run",
            full,
            "dvc repro (nothing changed)",
            target="≤ 3 s",
            met=noop <= 3,
        ),
    ]
