"""One trial of a sweep: the task's training on the already built split, with the trial's values,
its own folder and the sweep's epochs cap, reporting the validation score after every epoch so the
pruner can stop it there. The trial is an MLflow child run of the sweep's parent run."""

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import optuna

from tasks import train
from tasks.common.errors import PipelineError
from tasks.common.params import Params, load_params, tracking_store
from tasks.common.sections import SweepTask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepPlan:
    """What every trial of one sweep shares; plain values, so it travels to a Dask worker."""

    task: str
    params_file: str  # the sweep's copy of the params file (<folder>/<study>/params.yaml)
    overrides: dict[str, Any]  # the command line's --set, under every trial's own values
    spec: SweepTask
    folder: str  # <sweep.output_dir>/<task>
    study_name: str
    parent_run_id: str

    def trial_dir(self, number: int) -> Path:
        """<folder>/<study>/trial-<n>: per study, so another study's trial n (and its test score)
        is never taken for this one's."""
        return Path(self.folder) / self.study_name / f"trial-{number}"

    def trial_overrides(self, number: int, values: dict[str, Any]) -> dict[str, Any]:
        """The trial's params on top of the file: its own folders (so no trial resumes another's
        checkpoint or overwrites models/<task>/model.pt), the epochs cap, then its sampled values."""
        t, d = self.task, self.trial_dir(number)
        return {
            **self.overrides,
            f"{t}.train.output_dir": str(d / "model"),
            f"{t}.train.history": str(d / "history.csv"),
            f"{t}.train.checkpoint_dir": str(d / "checkpoints"),
            f"{t}.evaluate.output_dir": str(d / "evaluation"),
            f"{t}.evaluate.metrics": str(d / "evaluation" / "metrics.json"),
            f"{t}.train.epochs": self.spec.epochs,
            **values,
        }

    def trial_params(self, number: int, values: dict[str, Any]) -> Params:
        return load_params(self.params_file, self.trial_overrides(number, values))


class EpochReporter:
    """The training's `on_epoch` hook: report the epoch's validation score to the trial and raise
    TrialPruned when the pruner says so (or the score is not finite: a diverged run)."""

    def __init__(self, trial: optuna.Trial, spec: SweepTask, task: str):
        self.trial, self.metric, self.task = trial, spec.metric, task
        self.maximize = spec.direction == "maximize"
        self.rows: list[dict] = []

    def __call__(self, row: dict) -> None:
        if self.metric not in row:
            scores = ", ".join(k for k in row if k.startswith("val_"))
            raise PipelineError(
                f"params.yaml sweep.{self.task}.metric: {self.metric!r} is not a validation score of "
                f"{self.task} (one of: {scores}); fix it"
            )
        self.rows.append(row)
        value, epoch = float(row[self.metric]), int(row["epoch"])
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"{self.metric} is {value} at epoch {epoch}")
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.metric} {value:.4g}")

    def best_row(self) -> dict:
        """The epoch whose weights training kept, when `metric` is the score it monitors."""
        pick = max if self.maximize else min
        return pick(self.rows, key=lambda r: r[self.metric])


def run_trial(plan: SweepPlan, trial: optuna.Trial) -> dict:
    """Train with the trial's values (sampled by `study.ask` beforehand); the outcome for
    `study.tell`: state complete (value: the best epoch's score) or pruned. A pruned or failed
    trial's MLflow run ends KILLED or FAILED, and its epoch checkpoints are removed."""
    params = plan.trial_params(trial.number, trial.params)
    tags = {
        "mlflow.parentRunId": plan.parent_run_id,
        "mlflow.runName": f"trial-{trial.number}",
        "sweep.study": plan.study_name,
        "sweep.trial": str(trial.number),
    }
    reporter, started = EpochReporter(trial, plan.spec, plan.task), time.monotonic()
    try:
        train.run(params, extra_tags=tags, task=plan.task, on_epoch=reporter)
    except optuna.TrialPruned as exc:
        end_trial_run(params, plan, trial.number, "KILLED")
        shutil.rmtree(plan.trial_dir(trial.number) / "checkpoints", ignore_errors=True)
        return {"state": "pruned", "reason": str(exc), "epochs": len(reporter.rows), "seconds": elapsed(started)}
    except BaseException as exc:  # an error or Ctrl-C: the run must not read as finished; re-raised
        end_trial_run(params, plan, trial.number, "FAILED" if isinstance(exc, Exception) else "KILLED")
        raise
    best = reporter.best_row()
    return {
        "state": "complete",
        "value": float(best[plan.spec.metric]),
        "best_epoch": best,
        "epochs": len(reporter.rows),
        "seconds": elapsed(started),
    }


def elapsed(started: float) -> float:
    return round(time.monotonic() - started, 1)


def end_trial_run(params: Params, plan: SweepPlan, number: int, status: str) -> None:
    """Mark trial `number`'s MLflow child run KILLED or FAILED (training closes its run as it goes,
    so a cut one would otherwise read FINISHED). Found by its tags: the loop does not hand it out."""
    client = mlflow.MlflowClient(tracking_store(params))
    for run in trial_runs(client, plan, number):
        client.set_terminated(run.info.run_id, status)


def trial_runs(client: mlflow.MlflowClient, plan: SweepPlan, number: int) -> list:
    parent = client.get_run(plan.parent_run_id)
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{plan.parent_run_id}' and tags.`sweep.trial` = '{number}'",
    )
