"""A training stage's bookkeeping: its MLflow run (reopened when a killed run resumes), the
checkpoint fingerprint, the files it writes (model.pt, history.csv, the run id), and what stopped
training (`stopped_by`: in model.pt, which evaluate copies into metrics.json, and as a run tag)."""

import csv
import io
from collections.abc import Callable
from pathlib import Path

import mlflow
import torch

from tasks.common import tracking
from tasks.common.atomic import atomic_path, write_text
from tasks.common.lineage import file_md5, lineage_tags
from tasks.common.params import params_hash
from tasks.training import distributed


def history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def open_run(params, tp, task: str, fingerprint: str, checkpoint: Path, extra_tags: dict | None, logged: dict) -> str:
    """Open (or reopen, when resuming) the pipeline's MLflow run and log the training params."""
    cfg = tp.train
    tags = {**lineage_tags(params, tp), **(extra_tags or {})}
    run_id = tracking.start_run(params, tags, run_id=_resumable_run_id(checkpoint, fingerprint), task=task)
    with atomic_path(Path(cfg.checkpoint_dir) / "run_id") as tmp:  # a resumed run logs to the same MLflow run
        tmp.write_text(f"{fingerprint} {run_id}")
    tracking.log_params(
        run_id,
        {
            **{f"model.{k}": v for k, v in tp.model.model_dump().items()},
            **{
                f"train.{k}": v
                for k, v in cfg.model_dump().items()
                if k not in ("output_dir", "history", "checkpoint_dir")
            },
            **logged,
        },
    )
    return run_id


def save_outputs(tp, run_id: str, checkpoint: Path, ckpt: dict, history: list[dict], stopped_by: str) -> None:
    """model.pt (with the params, the history and what stopped training), history.csv and the run
    id; the run gets tag `stopped_by` (epochs | early_stopping | max_minutes)."""
    out = Path(tp.train.output_dir)
    saved = {"params": tp.model_dump(mode="json", by_alias=True), "history": list(history), "stopped_by": stopped_by}
    with atomic_path(out / "model.pt") as tmp:
        torch.save({**ckpt, **saved}, tmp)
    write_text(history_csv(history), tp.train.history)
    mlflow.MlflowClient().set_tag(run_id, "stopped_by", stopped_by)  # so a cut run is not taken for a converged one
    tracking.save_run_id(out, run_id)
    checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume


def stopped_by_of(model_pt: str | Path) -> str | None:
    """What stopped the training that wrote `model_pt` (None for a checkpoint older than the key);
    memory-mapped, so the weights are not read."""
    return torch.load(model_pt, map_location="cpu", weights_only=True, mmap=True).get("stopped_by")


def fingerprint_of(tp, vocab, data_id: str) -> str:
    """A checkpoint is resumed only for the same model, loop settings, vocabulary, data (`data_id`:
    e.g. the split's md5) and number of processes (a process count other than 1 changes what each
    step sees)."""
    world = distributed.world_size()
    return f"{params_hash(tp.model)}-{params_hash(tp.train)}-{vocab.hash}-{data_id[:12]}" + (
        f"-world{world}" if world > 1 else ""
    )


def start_tracking(params, tp, task, fingerprint, checkpoint, extra_tags, logged) -> tuple[str | None, Callable | None]:
    """Rank 0 opens the MLflow run; other ranks log nothing (run id and epoch logger None)."""
    if not distributed.is_main():
        return None, None
    run_id = open_run(
        params, tp, task, fingerprint, checkpoint, extra_tags, {**logged, "world_size": distributed.world_size()}
    )
    return run_id, tracking.epoch_logger(run_id)


def _resumable_run_id(checkpoint: Path, fingerprint: str) -> str | None:
    marker = checkpoint.parent / "run_id"
    if checkpoint.exists() and marker.exists():
        saved_fp, _, run_id = marker.read_text().partition(" ")
        return run_id if saved_fp == fingerprint else None
    return None


def prepare_run(
    params,
    tp,
    vocab,
    task: str,
    extra_tags: dict[str, str] | None,
    logged: dict,
    on_epoch: Callable | None = None,
    data_id: str | None = None,
):
    """What both trainers do once their model is built: under torchrun each rank draws its own
    dropout masks (the initial weights were drawn alike), then the epoch checkpoint to resume from,
    its fingerprint, and (rank 0) the MLflow run. Returns (run_id, on_epoch_end, checkpoint, fingerprint).
    `on_epoch(row)`: the caller's own per-epoch hook (a sweep reports and prunes there), run on rank 0
    after the epoch is logged to MLflow. `data_id`: what identifies the training data for the
    checkpoint (default: the md5 of the task's split)."""
    if distributed.world_size() > 1:
        torch.manual_seed(tp.train.seed + distributed.rank())
    fingerprint = fingerprint_of(tp, vocab, data_id or file_md5(tp.split.output))
    checkpoint = Path(tp.train.checkpoint_dir) / "last.pt"
    run_id, on_epoch_end = start_tracking(params, tp, task, fingerprint, checkpoint, extra_tags, logged)
    if on_epoch is not None and on_epoch_end is not None:
        on_epoch_end = chain_epoch_hooks(on_epoch_end, on_epoch)
    return run_id, on_epoch_end, checkpoint, fingerprint


def chain_epoch_hooks(*hooks: Callable[[dict], None]) -> Callable[[dict], None]:
    """One per-epoch hook that calls `hooks` in order with the epoch's row."""

    def on_epoch_end(row: dict) -> None:
        for hook in hooks:
            hook(row)

    return on_epoch_end
