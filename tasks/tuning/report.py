"""What a finished sweep leaves behind, in <sweep.output_dir>/<task>/ and on its MLflow parent run:
the trials table (CSV and Markdown), best_params.yaml (the whole params file with the winner's
values: `python -m flows.train_<task> --params` takes it), summary.json, Optuna's own plots, and
the winner's test metrics: the test split is scored once, for the winner only."""

import csv
import io
import json
import logging
import warnings
from pathlib import Path

import mlflow
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots

from tasks import evaluate
from tasks.common import tracking
from tasks.common.atomic import write_json, write_text
from tasks.common.errors import PipelineError
from tasks.common.params import Params, apply_overrides
from tasks.common.plots import save_figure  # first: it puts matplotlib on its headless backend
from tasks.tuning.objective import SweepPlan

log = logging.getLogger(__name__)


def best_trial(study: optuna.Study) -> FrozenTrial:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise PipelineError(f"study {study.study_name}: no trial completed; see the trial lines above")
    return study.best_trial


def score_winner(plan: SweepPlan, number: int, values: dict) -> dict:
    """The evaluate stage on the winner's model, its reports in the trial's evaluation/ folder and
    logged to its MLflow run. Once per winner: a rerun of a finished sweep reads those metrics."""
    params = plan.trial_params(number, values)
    metrics_file = Path(getattr(params, plan.task).evaluate.metrics)
    if metrics_file.exists():
        log.info("trial %d was scored on the test split before: %s", number, metrics_file)
        return json.loads(metrics_file.read_text(encoding="utf-8"))
    return evaluate.run(params, task=plan.task)


def trial_rows(study: optuna.Study) -> list[dict]:
    """One row per trial: number, state, value, its values, epochs run and seconds."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = t.user_attrs.get("seconds")
        if seconds is None and t.datetime_complete and t.datetime_start:
            seconds = round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                **t.params,
                "epochs": t.user_attrs.get("epochs"),
                "seconds": seconds,
                "defaults": bool(t.user_attrs.get("defaults")),
            }
        )
    return rows


def rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def rows_markdown(rows: list[dict], metric: str) -> str:
    head = list(dict.fromkeys(k for r in rows for k in r))
    cell = {float: lambda v: f"{v:.4g}", type(None): lambda v: ""}
    lines = ["| " + " | ".join(metric if k == "value" else k for k in head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(cell.get(type(r.get(k)), str)(r.get(k)) for k in head) + " |")
    return "\n".join(lines) + "\n"


def write_best_params(plan: SweepPlan, best: FrozenTrial, path: Path) -> Path:
    """The params file with the winner's values (and the command line's --set) in place: every other
    key as the file has it, the real epochs and paths included (the sweep's own caps are not kept)."""
    raw = yaml.safe_load(Path(plan.params_file).read_text(encoding="utf-8"))
    raw = apply_overrides(raw, {**plan.overrides, **best.params})
    Params.model_validate(raw)  # what load_params will check, before the file exists
    values = ", ".join(f"{k}={v!r}" for k, v in best.params.items())
    header = (
        f"# {plan.params_file} (the params file as the sweep read it) with trial {best.number}'s values,\n"
        f"# the best {plan.spec.metric} ({best.value:.6g}) of sweep study {plan.study_name}:\n#   {values}\n"
    )
    write_text(header + yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), path)
    return path


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Optuna's parallel-coordinate plot and, from two completed trials on, its parameter
    importances (matplotlib backend)."""
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    figures = {"parallel_coordinate.png": optuna_plots.plot_parallel_coordinate}
    if complete >= 2:
        figures["param_importances.png"] = optuna_plots.plot_param_importances
    written = []
    with warnings.catch_warnings():  # "experimental" API, and notes on flat axes of a small study
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        for name, plot in figures.items():
            fig = plot(study).figure
            fig.set_size_inches(11, 6)
            fig.tight_layout()  # dotted params keys are long: keep the labels inside the figure
            save_figure(fig, folder / name)
            written.append(folder / name)
    return written


def defaults_trial(study: optuna.Study) -> dict | None:
    """The finished trial that ran the params file's own values (sweep.try_defaults_first)."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.user_attrs.get("defaults"):
            return {"trial": t.number, "state": t.state.name.lower(), "value": t.value}
    return None


def summarize(study: optuna.Study, plan: SweepPlan, test_metrics: dict, wall_seconds: float, target: int) -> dict:
    """summary.json: the trial counts, the winner (validation) and its test metrics, the time taken
    (this run's wall clock; all trials' training, resumed runs included) and how to use the winner."""
    best = best_trial(study)
    counts = {s: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    best_file = Path(plan.folder) / "best_params.yaml"
    return {
        "task": plan.task,
        "study": plan.study_name,
        "metric": plan.spec.metric,
        "direction": plan.spec.direction,
        "trials": target,
        "complete": counts[TrialState.COMPLETE],
        "pruned": counts[TrialState.PRUNED],
        "failed": counts[TrialState.FAIL],
        "best": {
            "trial": best.number,
            "value": best.value,
            "params": best.params,
            "epoch": best.user_attrs.get("best_epoch"),
        },
        "defaults_trial": defaults_trial(study),
        "winner_test": test_metrics,
        "wall_seconds": round(wall_seconds, 1),
        "trial_seconds": round(sum(r["seconds"] or 0 for r in trial_rows(study)), 1),
        "best_params": str(best_file),
        "train_command": f"python -m flows.train_{plan.task} --params {best_file}",
        "dvc_exp_run": "dvc exp run " + " ".join(f"-S '{k}={v}'" for k, v in best.params.items()),
        "mlflow_parent_run_id": plan.parent_run_id,
    }


def finish(params: Params, study: optuna.Study, plan: SweepPlan, test_metrics: dict, wall_seconds: float) -> dict:
    """Write the sweep's files in its folder and log them, the winner and its test metrics to the
    parent run; returns the summary."""
    folder, best, rows = Path(plan.folder), best_trial(study), trial_rows(study)
    write_text(rows_csv(rows), folder / "sweep_results.csv")
    write_text(rows_markdown(rows, plan.spec.metric), folder / "sweep_results.md")
    write_best_params(plan, best, folder / "best_params.yaml")
    plots = write_plots(study, folder)
    summary = summarize(study, plan, test_metrics, wall_seconds, params.sweep.trials)
    write_json(summary, folder / "summary.json")
    files = ["sweep_results.csv", "sweep_results.md", "best_params.yaml", "summary.json", *(p.name for p in plots)]
    log_parent(params, plan, summary, [folder / name for name in files])
    return summary


def log_parent(params: Params, plan: SweepPlan, summary: dict, files: list[Path]) -> None:
    """The space as params (fixed for a study), the winner's values as tags and its scores as
    metrics (both may change when a resumed sweep finds a better trial), the files as artifacts."""
    tracking.configure(params, plan.task)
    space = {f"space.{d.key}": describe(d) for d in plan.spec.space}
    best, numeric = summary["best"], (int, float)
    test = {k: v for k, v in summary["winner_test"].items() if isinstance(v, numeric) and not isinstance(v, bool)}
    with mlflow.start_run(run_id=plan.parent_run_id):
        mlflow.log_params({**space, "epochs": plan.spec.epochs, "metric": plan.spec.metric})
        mlflow.set_tags({"best.trial": best["trial"], **{f"best.{k}": v for k, v in best["params"].items()}})
        mlflow.log_metrics(
            {
                f"best_{plan.spec.metric}": best["value"],
                **{f"trials_{k}": summary[k] for k in ("complete", "pruned", "failed")},
                **test,
            }
        )
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="sweep")


def describe(dim) -> str:
    """A dimension as one param value: `float 0.0005..0.005 log`, `categorical [128, 256]`."""
    if dim.type == "categorical":
        return f"categorical {dim.choices}"
    return f"{dim.type} {dim.low}..{dim.high}{' log' if dim.log else ''}"
