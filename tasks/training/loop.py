"""The training loop both tasks share (`fit`): optimizer, LR schedule, clipping, early stopping
with the best weights restored, an epoch checkpoint that a killed run resumes from, and the
`max_minutes` budget. Distributed under `torchrun`, rank 0 decides and writes (tasks/training/distributed.py)."""

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tasks.common.atomic import atomic_path
from tasks.training import distributed

log = logging.getLogger(__name__)


def make_scheduler(optimizer, cfg, steps_per_epoch: int):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    warmup, total = cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def fit(
    model: nn.Module,
    run_epoch: Callable,
    cfg,
    device: torch.device,
    steps_per_epoch: int,
    on_epoch_end: Callable[[dict], None] | None = None,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    monitor: str = "val_loss",
    higher_is_better: bool = False,
) -> list[dict]:
    """The loop both tasks share: optimizer, LR schedule, clipping, early stopping on `monitor`
    (best weights restored), an epoch checkpoint to resume from, and the `max_minutes` budget.

    `run_epoch(epoch, step, lr)` trains one epoch, calling `step(loss)` once per batch, then
    validates; it returns the epoch's history row (holding `monitor`). `lr()` is the current rate.
    `checkpoint`: written after every epoch (by rank 0); when it exists with the same `fingerprint`,
    training resumes from it. Distributed, every rank takes rank 0's epoch row and time-budget verdict,
    so all make the same scheduler, best-weights and stopping decisions.
    """
    model.to(device)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    history: list[dict] = []
    worst = -math.inf if higher_is_better else math.inf
    best_val, best_state, bad_epochs, start_epoch = worst, None, 0, 1

    if checkpoint and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"].cpu())  # map_location may have moved it to CUDA
            history, best_val, best_state = state["history"], state["best_val"], state["best_state"]
            bad_epochs, start_epoch = state["bad_epochs"], state["epoch"] + 1
            log.info("resuming from %s after epoch %d", checkpoint, state["epoch"])
        else:
            log.info("ignoring %s: it was written for other params or data", checkpoint)

    def step(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)  # RNNs explode without it
        optimizer.step()
        if cfg.scheduler == "cosine":
            scheduler.step()

    def lr() -> float:
        return optimizer.param_groups[0]["lr"]

    started = time.monotonic()
    for epoch in range(start_epoch, cfg.epochs + 1):
        if bad_epochs >= cfg.early_stopping_patience:
            break
        row = {"epoch": epoch, **run_epoch(epoch, step, lr)}
        row, out_of_time = distributed.from_main((row, (time.monotonic() - started) / 60 > cfg.max_minutes))
        history.append(row)
        score = row[monitor]
        if cfg.scheduler == "plateau":
            scheduler.step(-score if higher_is_better else score)
        if (score > best_val) if higher_is_better else (score < best_val):
            best_val, bad_epochs = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if on_epoch_end:
            on_epoch_end(row)
        if checkpoint and distributed.is_main():
            with atomic_path(checkpoint) as tmp:
                torch.save(
                    {
                        "fingerprint": fingerprint,
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": torch.get_rng_state(),
                        "history": history,
                        "best_val": best_val,
                        "best_state": best_state,
                        "bad_epochs": bad_epochs,
                    },
                    tmp,
                )
        if out_of_time:
            log.info("stopping: train.max_minutes=%s reached", cfg.max_minutes)
            break
    if bad_epochs >= cfg.early_stopping_patience:
        log.info("early stopping: no %s improvement for %d epochs", monitor, bad_epochs)
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
