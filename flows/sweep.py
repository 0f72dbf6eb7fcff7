"""Prefect flow `sweep`: the task's data stages once (cached like the train flows'), then Optuna
trials of its training (tasks/tuning), each a Prefect task, then the winner scored on the test split.

    python -m flows.sweep --task lyrics|reviews [--params params.yaml] [--set KEY=VALUE ...] [--trials N]
    make sweep TASK=lyrics

The space, trial count, epochs cap, pruner and storage are params.yaml `sweep:`. Trials run one at
a time in the flow process, or `sweep.parallel` at once on Dask (`orchestration.task_runner: dask`;
the study's storage must then be reachable from the workers: the SQLite default on a shared
filesystem, or a database URL). Rerunning an interrupted sweep resumes its study. The outputs:
<sweep.output_dir>/<task>/best_params.yaml (takes `--params` of flows.train_<task>), summary.json,
sweep_results.csv|md and Optuna's plots, all logged to the sweep's MLflow parent run.
"""

import argparse
import time
from typing import Any

import prefect
from prefect import flow
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FailedRun
from prefect.states import Failed, State

from flows.scaleout import on_dask, with_task_runner
from flows.stages import (
    StageRuns,
    check_inputs,
    clean_task,
    flow_run_tags,
    ingest_task,
    preflight_task,
    pretrain_task,
    pretrains_base,
    split_task,
    tokenize_task,
    vocab_task,
)
from tasks.catalog import task_package
from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.common.params import TASKS, load_params, parse_set_args
from tasks.common.progress import duration
from tasks.tuning import report, study
from tasks.tuning.objective import run_trial
from tasks.tuning.space import check_space

# A trial is not retried: its values are told FAIL and a rerun of the sweep replaces it.
trial_task = prefect.task(
    run_trial, name="sweep-trial", task_run_name="trial-{trial.number}", cache_policy=NO_CACHE, persist_result=False
)
score_winner_task = prefect.task(report.score_winner, name="sweep-evaluate", cache_policy=NO_CACHE)


def run_data_stages(stages: StageRuns) -> None:
    """The stages before train, as the task's flow runs them (cached alike): what every trial shares
    (the split, the vocabulary and, for lyrics, the base model it fine-tunes from)."""
    if pretrains_base(stages.params, stages.task):
        stages.run(pretrain_task, extra_tags=flow_run_tags())
    first = [ingest_task] if "ingest" in task_package(stages.task).STAGES else []
    for stage in (*first, clean_task, tokenize_task, split_task, vocab_task):
        stages.run(stage)


@flow(name="sweep", log_prints=True)
def sweep(
    task: str = "lyrics",
    params_file: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    refresh: bool = False,
    check_inputs_first: bool = True,
) -> dict | State:
    """Sweep `task`'s hyperparameters; `overrides` as the train flows' (`{"sweep.trials": 3}`).
    Bad input or a bad space fails the run with its one line."""
    try:
        started, overrides = time.monotonic(), dict(overrides or {})
        params = load_params(params_file, overrides)
        check_space(params, task, params_file, overrides)
        stages = StageRuns(params, task)
        if check_inputs_first:
            preflight_task(params, task, refresh)
        run_data_stages(stages)
        trials, plan = study.start(params, params_file, overrides, task, flow_run_tags())
        in_flight = params.sweep.parallel if on_dask() else 1  # threads of one process share torch's RNG
        cfg = params.sweep
        study.run_trials(trials, plan, cfg.trials, trial_task.submit, in_flight, cfg.timeout_minutes)
        best = report.best_trial(trials)
        test_metrics = score_winner_task(plan, best.number, best.params)
        return report.finish(params, trials, plan, test_metrics, time.monotonic() - started)
    except PipelineError as exc:
        return Failed(message=str(exc))


def parse_args() -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(description="Sweep a task's hyperparameters with Optuna (params.yaml sweep:).")
    parser.add_argument("--task", choices=TASKS, default=TASKS[0], help=f"which pipeline (default: {TASKS[0]})")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a param (repeatable)")
    parser.add_argument("--trials", type=int, help="trials to finish (complete or pruned); sets sweep.trials")
    parser.add_argument("--refresh", "--force", action="store_true", help="rerun every data stage, ignoring the cache")
    args = parser.parse_args()
    overrides = parse_set_args(args.set)
    if args.trials is not None:
        overrides["sweep.trials"] = args.trials
    return args, overrides


def main() -> None:
    """Params, space and inputs are checked before Prefect starts, so a mistake is one line."""
    args, overrides = parse_args()
    params = load_params(args.params, overrides)
    check_space(params, args.task, args.params, overrides)
    check_inputs(params, args.task, args.refresh)
    try:
        summary = with_task_runner(sweep, params)(
            task=args.task, params_file=args.params, overrides=overrides, refresh=args.refresh, check_inputs_first=False
        )
    except FailedRun as exc:
        raise PipelineError(str(exc)) from None
    print(summary_line(summary))


def summary_line(s: dict) -> str:
    """`sweep lyrics: 8 trials (5 complete, 3 pruned) in 7:12; best val_loss 5.01 (trial 4); test ...`"""
    best, test = s["best"], s["winner_test"]
    floats = {k: v for k, v in test.items() if k.startswith("test_") and isinstance(v, float)}
    twin = f"test_{s['metric'].removeprefix('val_')}"  # the test split's own score of the metric, first
    scores = [f"{k} {floats[k]:.4g}" for k in sorted(floats, key=lambda k: k != twin)][:3]
    return (
        f"sweep {s['task']}: {s['complete'] + s['pruned']} trials ({s['complete']} complete, {s['pruned']} pruned) "
        f"in {duration(s['wall_seconds'])}; best {s['metric']} {best['value']:.4g} (trial {best['trial']}); "
        f"winner's {', '.join(scores)}\nparams: {s['best_params']} ({s['train_command']})"
    )


if __name__ == "__main__":
    run_cli(main)
