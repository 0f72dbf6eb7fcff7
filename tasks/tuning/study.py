"""The Optuna study of a sweep, kept in Optuna's own RDB storage (`sweep.storage`, an SQLite file
beside mlflow.db by default) under a name derived from the task and its space, so rerunning an
interrupted sweep finds it and runs only the trials still missing. Trials are asked for here,
handed to `submit` (the flow's Prefect task: a Dask worker, or the flow process), and told back."""

import logging
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from tasks.common import tracking
from tasks.common.atomic import write_text
from tasks.common.errors import PipelineError
from tasks.common.params import Params, tracking_store
from tasks.common.progress import duration
from tasks.common.sections import SweepTask
from tasks.tuning.objective import SweepPlan, end_trial_run
from tasks.tuning.space import check_space, defaults_of, distributions, study_name

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts toward sweep.trials
PARENT_RUN_ATTR = "mlflow_parent_run_id"


def open_study(params: Params, task: str, name: str) -> optuna.Study:
    """Create the study, or load it when a run of the same sweep stored it: TPE (seeded) and the
    median pruner on the per-epoch validation score."""
    cfg, spec = params.sweep, getattr(params.sweep, task)
    connect = {"connect_args": {"timeout": 60}} if cfg.storage.startswith("sqlite") else {}  # parallel trials wait
    try:
        storage = optuna.storages.RDBStorage(cfg.storage, engine_kwargs=connect)
    except (sqlalchemy.exc.SQLAlchemyError, ValueError, ImportError) as exc:
        raise PipelineError(
            f"params.yaml sweep.storage: cannot open {cfg.storage!r} ({str(exc).splitlines()[0]}); "
            "use an SQLAlchemy URL such as sqlite:///optuna.db"
        ) from None
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction=spec.direction,
        sampler=optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.startup_trials),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=cfg.pruner.startup_trials, n_warmup_steps=cfg.pruner.min_epochs
        ),
        load_if_exists=True,
    )


def start(params: Params, params_file: str, overrides: dict, task: str, tags: dict[str, str]):
    """(study, plan): the space checked, the study opened, its MLflow parent run (re)opened, trials
    a killed run left RUNNING failed and queued again, and the defaults queued as the first trial."""
    spec = check_space(params, task, params_file, overrides)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep logs its own line per trial
    study = open_study(params, task, study_name(params, task))
    folder = Path(params.sweep.output_dir) / task
    # Every trial reads this copy: an edit of the params file mid-sweep cannot change later trials.
    snapshot = folder / study.study_name / "params.yaml"
    write_text(Path(params_file).read_text(encoding="utf-8"), snapshot)
    plan = SweepPlan(
        task=task,
        params_file=str(snapshot),
        overrides=dict(overrides),
        spec=spec,
        folder=str(folder),
        study_name=study.study_name,
        parent_run_id=parent_run(params, task, study, tags),
    )
    recover_interrupted(study, plan, params)
    if params.sweep.try_defaults_first:
        queue_defaults(study, params, spec)
    done, target = finished(study), params.sweep.trials
    log.info("study %s (%s): %d of %d trials finished", study.study_name, params.sweep.storage, done, target)
    return study, plan


def queue_defaults(study: optuna.Study, params: Params, spec: SweepTask) -> None:
    """The params file's own values as the first trial (once per study), when the space holds them."""
    defaults, outside = defaults_of(params, spec)
    if outside:
        log.info("defaults not tried first: %s outside the space", ", ".join(outside))
    else:
        study.enqueue_trial(defaults, user_attrs={"defaults": True}, skip_if_exists=True)


def parent_run(params: Params, task: str, study: optuna.Study, tags: dict[str, str]) -> str:
    """The sweep's MLflow run, the trials' parent: the one this study recorded, while the store
    still has it, so a resumed sweep's trials join the same parent."""
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id:
        try:
            if mlflow.MlflowClient(tracking_store(params)).get_run(run_id).info.lifecycle_stage == "active":
                return tracking.start_run(params, tags, run_id=run_id, task=task)
        except mlflow.exceptions.MlflowException:
            pass  # the store was wiped or moved: a new parent below
    names = {"mlflow.runName": f"sweep-{study.study_name}", "sweep.study": study.study_name, "sweep.task": task}
    run_id = tracking.start_run(params, {**tags, **names}, task=task)
    study.set_user_attr(PARENT_RUN_ATTR, run_id)
    return run_id


def recover_interrupted(study: optuna.Study, plan: SweepPlan, params: Params) -> None:
    """Trials still RUNNING when a sweep starts were cut by a kill (one sweep process per study):
    fail them, end their MLflow runs KILLED, and queue their values again (a fresh trial folder)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        end_trial_run(params, plan, trial.number, "KILLED")
        study.enqueue_trial(trial.params, user_attrs=dict(trial.user_attrs))
        log.warning("trial %d was interrupted: failed, its values queued again", trial.number)


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def run_trials(
    study: optuna.Study,
    plan: SweepPlan,
    target: int,
    submit: Callable,
    in_flight: int = 1,
    timeout_minutes: float | None = None,
) -> list[int]:
    """Ask, submit and tell trials in waves of `in_flight` until `target` have finished (complete or
    pruned) or no new wave may start after `timeout_minutes`. `submit(plan, trial)` returns a future
    (`.result()`). A failed trial is told FAIL; once its wave is settled its error is raised.
    Returns the numbers of the trials run."""
    started, ran, dists = time.monotonic(), [], distributions(plan.spec)
    while (left := target - finished(study)) > 0:
        if timeout_minutes is not None and (time.monotonic() - started) / 60 >= timeout_minutes:
            log.info("sweep.timeout_minutes=%s reached with %d of %d trials left", timeout_minutes, left, target)
            break
        wave = [study.ask(dists) for _ in range(min(in_flight, left))]
        pending = [(trial, submit(plan, trial)) for trial in wave]
        errors = [error for trial, future in pending if (error := settle(study, plan, trial, future, target))]
        ran += [trial.number for trial in wave]
        if errors:
            raise errors[0]
    return ran


def settle(study: optuna.Study, plan: SweepPlan, trial: optuna.Trial, future, target: int) -> Exception | None:
    """Wait for one trial, tell the study its outcome, log its line; its error, if it failed."""
    try:
        outcome = future.result()
    except Exception as exc:  # told FAIL (not counted, so a rerun replaces it), then raised by run_trials
        study.tell(trial, state=TrialState.FAIL)
        log.error("trial %d failed: %s", trial.number, exc)
        return exc
    for key in ("epochs", "seconds", "best_epoch", "reason"):
        if key in outcome:
            trial.set_user_attr(key, outcome[key])
    if outcome["state"] == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, outcome["value"])
    log.info(trial_line(study, plan, trial.number, outcome, target))
    return None


def trial_line(study: optuna.Study, plan: SweepPlan, number: int, outcome: dict, target: int) -> str:
    """`trial 3 [4/8] complete: val_loss 5.12 (best 5.01, trial 1) | 4 epochs 01:02 | lyrics.train.lr=0.0012 ...`
    (a pruned trial: `pruned at epoch 2`)."""
    trials = study.get_trials(deepcopy=False)
    frozen, complete = trials[number], [t for t in trials if t.state == TrialState.COMPLETE]
    state = f"pruned at epoch {outcome['epochs']}" if outcome["state"] == "pruned" else outcome["state"]
    value = f"{plan.spec.metric} {frozen.value:.4g}" if frozen.value is not None else "no score"
    best = f" (best {study.best_value:.4g}, trial {study.best_trial.number})" if complete else ""
    values = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in frozen.params.items())
    return (
        f"trial {number} [{finished(study)}/{target}] {state}: {value}{best} | "
        f"{outcome['epochs']} epochs {duration(outcome['seconds'])} | {values}"
    )
