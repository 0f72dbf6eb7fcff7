"""The hyperparameter sweep (flows/sweep.py, tasks/tuning/): a tiny sweep through the flow completes,
prunes a hopeless trial (its MLflow run KILLED) and writes a params file that loads with the
winner's values; an interrupted sweep resumes and runs only what is missing; a bad space is one
line before Prefect starts; the per-epoch reporter prunes when the pruner says so."""

import json
import math
import os
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tasks import clean, split, tokenize, vocab
from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.common.params import load_params
from tasks.common.sections import SweepTask
from tasks.tuning import study as sweep_study
from tasks.tuning.objective import EpochReporter, run_trial
from tasks.tuning.space import study_name
from tests.helpers import ROOT, tiny_params_dict, write_tiny_corpus

HOPELESS_LR = 1e-6  # a trial at this LR barely moves: worse than the others at epoch 1, so pruned there


def sweep_params_file(tmp: Path, **sweep_updates) -> Path:
    """Tiny lyrics params (2-epoch trials of a 16-unit model) with a 3-trial sweep under tmp: the LR
    from a good value or a hopeless one, the dropout in a small range; pruning from epoch 1."""
    raw = tiny_params_dict(tmp, write_tiny_corpus(tmp / "raw"))
    lp = raw["lyrics"]
    lp["train"].update(device="cpu", epochs=3)  # 3: best_params.yaml keeps it, trials run the cap (2)
    if "continuous_cache" in lp["train"]:
        lp["train"]["continuous_cache"] = False  # seconds per trial; not what is tested here
    if "base_model" in lp:
        lp["base_model"] = None  # from scratch: no pretraining stage in a unit of seconds
    raw["sweep"].update(
        storage=f"sqlite:///{tmp / 'optuna.db'}",
        output_dir=str(tmp / "sweeps"),
        trials=3,
        startup_trials=1,
        try_defaults_first=True,
        pruner={"startup_trials": 1, "min_epochs": 1},
        **sweep_updates,
    )
    raw["sweep"]["lyrics"].update(
        epochs=2,
        metric="val_loss",
        direction="minimize",
        space=[
            {"key": "lyrics.train.lr", "type": "categorical", "choices": [0.01, HOPELESS_LR]},
            {"key": "lyrics.model.dropout", "type": "float", "low": 0.0, "high": 0.2, "log": False},
        ],
    )
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def sweep_env(tmp: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp / ".prefect"), "OMP_NUM_THREADS": "1"}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PIPELINE_PROGRESS="off")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "300"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def build_data(params) -> None:
    """The data stages in-process: what the flow's cached stages build once for all trials."""
    for stage in (clean, tokenize, split, vocab):
        stage.run(params, task="lyrics")


def inline(fn):
    """A `submit` that runs the trial here and hands back a settled future (no Prefect)."""

    def submit(*args):
        future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future

    return submit


def test_tiny_sweep_completes_prunes_and_writes_a_params_file(tmp_path, monkeypatch):
    path = sweep_params_file(tmp_path)
    params = load_params(path)
    monkeypatch.chdir(tmp_path)
    build_data(params)  # the study's name covers the split and vocabulary: build them as the flow will
    # The first two trials queued up front (Optuna's enqueue_trial): the defaults, then a hopeless LR.
    queued = sweep_study.open_study(params, "lyrics", study_name(params, "lyrics"))
    queued.enqueue_trial({"lyrics.train.lr": 0.01, "lyrics.model.dropout": 0.0})
    queued.enqueue_trial({"lyrics.train.lr": HOPELESS_LR, "lyrics.model.dropout": 0.0})

    proc = subprocess.run(
        [sys.executable, "-m", "flows.sweep", "--task", "lyrics", "--params", str(path)],
        cwd=tmp_path,
        env=sweep_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs[-3000:]
    assert "trial 1 [2/3] pruned at epoch 1: val_loss" in logs, logs[-3000:]  # the line per trial

    study = optuna.load_study(study_name=study_name(params, "lyrics"), storage=params.sweep.storage)
    states = [t.state for t in study.get_trials()]
    assert len(states) == 3 and states[:2] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert study.get_trials()[1].last_step == 1  # stopped after its first epoch, not trained out

    folder = tmp_path / "sweeps" / "lyrics"
    summary = json.loads((folder / "summary.json").read_text())
    counts = (states.count(TrialState.COMPLETE), states.count(TrialState.PRUNED), 3)
    assert (summary["complete"], summary["pruned"], summary["trials"]) == counts
    assert summary["best"]["trial"] == study.best_trial.number and summary["best"]["value"] == study.best_value
    assert math.isfinite(summary["winner_test"]["test_perplexity"])
    assert (folder / "parallel_coordinate.png").stat().st_size > 0
    assert "pruned" in (folder / "sweep_results.md").read_text()

    best = load_params(folder / "best_params.yaml")  # a full params file, as flows.train_lyrics --params takes it
    assert best.lyrics.train.lr == study.best_params["lyrics.train.lr"]
    assert best.lyrics.model.dropout == pytest.approx(study.best_params["lyrics.model.dropout"])
    assert best.lyrics.train.epochs == 3 and best.lyrics.train.output_dir == params.lyrics.train.output_dir
    assert not (Path(params.lyrics.train.output_dir) / "model.pt").exists()  # trials train in their own folders

    client = mlflow.MlflowClient(params.tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name(params.tracking.experiment).experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    parent_id = parent.info.run_id
    children = {r.data.tags["sweep.trial"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id}
    assert sorted(children) == ["0", "1", "2"] and children["1"].info.status == "KILLED"
    assert children[str(study.best_trial.number)].data.metrics["test_perplexity"] > 0  # scored once, the winner
    assert sum("test_perplexity" in r.data.metrics for r in children.values()) == 1
    assert parent.data.metrics["best_val_loss"] == study.best_value
    assert {"summary.json", "parallel_coordinate.png"} <= {
        Path(a.path).name for a in client.list_artifacts(parent_id, "sweep")
    }


def test_interrupted_sweep_resumes_with_only_the_missing_trials(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    path = sweep_params_file(tmp_path)
    params = load_params(path)
    build_data(params)

    def killed_at_third(plan, trial):
        if trial.number == 2:
            raise KeyboardInterrupt  # as a Ctrl-C or kill mid-sweep: the trial stays RUNNING in the study
        return inline(run_trial)(plan, trial)

    study, plan = sweep_study.start(params, str(path), {}, "lyrics", tags={})
    assert study.get_trials()[0].user_attrs == {"defaults": True}  # queued: the file's own values first
    with pytest.raises(KeyboardInterrupt):
        sweep_study.run_trials(study, plan, 3, killed_at_third)
    assert [t.state for t in study.get_trials()][2] == TrialState.RUNNING
    assert study.get_trials()[0].params == {"lyrics.train.lr": 0.01, "lyrics.model.dropout": 0.0}
    cut = study.get_trials()[2].params

    study, plan = sweep_study.start(params, str(path), {}, "lyrics", tags={})
    ran = sweep_study.run_trials(study, plan, 3, inline(run_trial))
    assert ran == [3]  # one more trial: 2 had finished before the interruption
    trials = study.get_trials()
    assert trials[2].state == TrialState.FAIL and trials[3].params == cut  # the cut trial's values, run again
    assert sweep_study.finished(study) == 3
    assert sweep_study.run_trials(study, plan, 3, inline(run_trial)) == []  # done: a rerun trains nothing
    assert plan.parent_run_id == study.user_attrs[sweep_study.PARENT_RUN_ATTR]  # one parent across the runs


@pytest.mark.parametrize(
    "entry, named",
    [
        ({"key": "lyrics.train.lrr", "type": "float", "low": 0.001, "high": 0.01, "log": True}, "lyrics.train.lrr"),
        ({"key": "lyrics.train.lr", "type": "float", "low": 0.01, "high": 0.001, "log": True}, "low 0.01 must be"),
        ({"key": "lyrics.model.dropout", "type": "float", "low": 0.5, "high": 1.5, "log": False}, "dropout=1.5"),
        ({"key": "lyrics.train.epochs", "type": "int", "low": 1, "high": 9, "log": False}, "the sweep sets"),
        ({"key": "reviews.train.lr", "type": "float", "low": 0.001, "high": 0.01, "log": True}, "not a lyrics key"),
    ],
)
def test_bad_space_is_one_line_before_prefect_starts(tmp_path, monkeypatch, capsys, entry, named):
    from flows import sweep

    path = sweep_params_file(tmp_path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["sweep"]["lyrics"]["space"] = [entry]
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["sweep", "--task", "lyrics", "--params", str(path)])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(sweep.main)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: {path}: sweep.lyrics.space: ") and named in err and "Traceback" not in err


class FakeTrial:
    """What the reporter needs of an Optuna trial; `prune_at`: the epoch its pruner says stop."""

    def __init__(self, prune_at: int | None):
        self.prune_at, self.reported = prune_at, []

    def report(self, value: float, step: int) -> None:
        self.reported.append((step, value))

    def should_prune(self) -> bool:
        return self.prune_at is not None and self.reported[-1][0] >= self.prune_at


def spec(metric: str = "val_loss", direction: str = "minimize") -> SweepTask:
    lr = {"key": "lyrics.train.lr", "type": "float", "low": 0.001, "high": 0.01, "log": True}
    return SweepTask(epochs=3, metric=metric, direction=direction, space=[lr])


def test_reporter_prunes_when_the_pruner_says_so_and_keeps_the_best_epoch():
    trial = FakeTrial(prune_at=2)
    reporter = EpochReporter(trial, spec(), "lyrics")
    reporter({"epoch": 1, "val_loss": 5.0})
    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        reporter({"epoch": 2, "val_loss": 4.0})
    assert trial.reported == [(1, 5.0), (2, 4.0)] and reporter.best_row()["val_loss"] == 4.0

    maximize = EpochReporter(FakeTrial(prune_at=None), spec("val_macro_f1", "maximize"), "reviews")
    for epoch, f1 in enumerate([0.6, 0.8, 0.7], start=1):
        maximize({"epoch": epoch, "val_macro_f1": f1})
    assert maximize.best_row()["epoch"] == 2


def test_reporter_prunes_a_diverged_run_and_names_an_unknown_metric():
    with pytest.raises(optuna.TrialPruned, match="nan"):
        EpochReporter(FakeTrial(prune_at=None), spec(), "lyrics")({"epoch": 1, "val_loss": float("nan")})
    with pytest.raises(PipelineError, match=r"sweep.lyrics.metric: 'val_f1' .*one of: val_loss, val_ppl"):
        EpochReporter(FakeTrial(None), spec("val_f1"), "lyrics")({"epoch": 1, "val_loss": 4.0, "val_ppl": 54.6})
