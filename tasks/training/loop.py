"""The training loop both tasks share (`fit`), read top to bottom: epochs, then batches with
zero_grad / backward / clip / step inline, validation, early stopping with the best weights
restored, an epoch checkpoint that a killed run resumes from, and the opt-in `max_minutes` budget
(off by default: a wall clock would make the model depend on the machine's speed). What differs
between the tasks (their batches, the loss of one batch, validation and the epoch's history row)
comes in as a `TaskPieces`. Distributed under `torchrun`, rank 0 decides and writes
(tasks/training/distributed.py)."""

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tasks.common.atomic import atomic_path
from tasks.common.errors import PipelineError
from tasks.common.progress import EpochProgress
from tasks.training import distributed

log = logging.getLogger(__name__)


@dataclass
class TaskPieces:
    """The task-specific parts of one epoch; `fit` runs the loop around them.

    batches(epoch): this rank's batches for the epoch, in training order.
    batch_loss(net, batch, hidden) -> (mean loss, hidden, sizes): the forward pass of one batch
        through `net` (DDP-wrapped when distributed). `hidden` is the recurrent state carried from
        the previous batch of the epoch (None at its start; the classifier ignores it). `sizes` has
        one int per name in `counts`, the first being what the mean loss is over.
    epoch_row(epoch, totals, seconds, lr) -> dict: validate, log, and return the epoch's history
        row (holding `monitor`); `totals` are all ranks' summed "loss" and `counts`.
    start_epoch(epoch): called before each epoch's first batch, also after a resume (gradual
        unfreezing decides there which layers train); None: nothing to do.
    resumable_mid_epoch: the batches carry no state from one to the next and `batches(epoch)`
        yields the same batches each time it is called, so with `train.checkpoint_every` > 0 the
        loop also checkpoints every that many batches and a killed run resumes by skipping the
        batches it had trained on. (A language model carries its hidden state across windows:
        it checkpoints at epoch ends, which pretraining keeps short with `epoch_tokens`.)
    """

    batches: Callable[[int], Iterable[Any]]
    batch_loss: Callable[[nn.Module, Any, Any], tuple[torch.Tensor, Any, tuple[int, ...]]]
    epoch_row: Callable[[int, dict[str, float], float, float], dict]
    counts: tuple[str, ...]
    steps_per_epoch: int  # optimizer steps per epoch: the cosine schedule's unit
    monitor: str = "val_loss"
    higher_is_better: bool = False
    find_unused_parameters: bool = False  # DDP: some parameter may get no gradient in a step
    start_epoch: Callable[[int], None] | None = None
    resumable_mid_epoch: bool = False


STLR_RATIO = 32  # slanted triangular: the lowest LR is lr / 32 (Howard & Ruder 2018)


def make_scheduler(optimizer, cfg, steps_per_epoch: int):
    """ReduceLROnPlateau on the epoch scores, or a per-step factor of each group's LR: linear
    warmup then cosine decay, or ULMFiT's slanted triangular schedule (a short linear rise from
    lr/32 over `warmup_epochs`, then a long linear fall back to lr/32 at `epochs`)."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    warmup, total = cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch

    def cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    def slanted_triangular(step: int) -> float:
        rise = max(1, warmup)
        p = step / rise if step < rise else max(0.0, 1 - (step - rise) / max(1, total - rise))
        return (1 + p * (STLR_RATIO - 1)) / STLR_RATIO

    lr_factor = cosine if cfg.scheduler == "cosine" else slanted_triangular
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def advance_lr(scheduler, cfg, epoch_score: float | None = None) -> None:
    """The one place the LR schedule moves. `fit` calls it after every optimizer step (no score)
    and after every epoch with the monitored score, lower is better: warmup+cosine and the slanted
    triangular schedule count steps, ReduceLROnPlateau watches the epoch scores."""
    if cfg.scheduler != "plateau" and epoch_score is None:
        scheduler.step()
    elif cfg.scheduler == "plateau" and epoch_score is not None:
        scheduler.step(epoch_score)


class History(list):
    """`fit`'s result: the history rows (one dict per epoch), and what ended training in
    `stopped_by`: "epochs" (train.epochs ran out), "early_stopping" (train.early_stopping_patience
    epochs without improvement) or "max_minutes" (the opt-in wall-clock budget cut the run short).
    A plain list to everything else (save it as `list(history)`: checkpoints load weights-only)."""

    stopped_by: str = "epochs"


@dataclass
class Progress:
    """Where training stands after `epoch` epochs: what the epoch checkpoint holds besides the
    model, optimizer, scheduler and RNG states."""

    best_val: float  # the best monitored score so far (-inf or inf before the first epoch)
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best_state: dict | None = None  # a copy of the weights that scored best_val
    bad_epochs: int = 0  # epochs since best_val last improved
    # A checkpoint taken mid-epoch: the batches of epoch `epoch + 1` trained so far (0: at an epoch
    # boundary), their totals summed over all ranks, and the seconds they took.
    batches_done: int = 0
    epoch_totals: dict = field(default_factory=dict)
    epoch_seconds: float = 0.0

    def record(self, row: dict, score: float, higher_is_better: bool, model: nn.Module) -> None:
        """Add the epoch's row; copy the weights when `score` is the best so far."""
        self.epoch = row["epoch"]
        self.history.append(row)
        if (score > self.best_val) if higher_is_better else (score < self.best_val):
            self.best_val, self.bad_epochs = score, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1


def fit(
    model: nn.Module,
    task: TaskPieces,
    cfg,
    device: torch.device,
    on_epoch_end: Callable[[dict], None] | None = None,
    checkpoint: Path | None = None,
    fingerprint: str = "",
) -> History:
    """Train `model` in place and return the history rows with what stopped training
    (`History.stopped_by`); it ends with the best weights by `task.monitor`. `checkpoint`: written
    after every epoch (by rank 0) and resumed from when it has the same `fingerprint`.
    `cfg.max_minutes`: a wall-clock budget, None (the default) for none. Distributed, every rank
    takes rank 0's epoch row and time verdict, so all make the same schedule, best-weights and
    stopping decisions."""
    model.to(device)
    net = distributed.wrap(model, device, find_unused_parameters=task.find_unused_parameters)  # shares model's weights
    optimizer, scheduler = make_optimizer(model, cfg, task.steps_per_epoch)
    progress = resume(checkpoint, fingerprint, model, optimizer, scheduler, device)
    progress = progress or Progress(best_val=-math.inf if task.higher_is_better else math.inf)
    started, stopped_by = time.monotonic(), "epochs"
    watch = EpochProgress(cfg.epochs, task.steps_per_epoch, task.counts[0], log, enabled=distributed.is_main())
    every = getattr(cfg, "checkpoint_every", 0) if task.resumable_mid_epoch and checkpoint else 0
    for epoch in range(progress.epoch + 1, cfg.epochs + 1):
        if progress.bad_epochs >= cfg.early_stopping_patience:
            break
        model.train()
        if task.start_epoch:
            task.start_epoch(epoch)
        watch.start(epoch)
        done, totals, before = resumed_epoch(progress, task.counts)
        batches = iter(task.batches(epoch))
        if done:
            log.info("resuming epoch %d after batch %d: replaying the epoch's stream to there", epoch, done)
            batches = itertools.islice(batches, done, None)
        t0, hidden = time.perf_counter(), None
        for step, batch in enumerate(batches, start=done + 1):
            loss, hidden, sizes = task.batch_loss(net, batch, hidden)  # loss: mean over sizes[0] items
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)  # RNNs explode without it
            optimizer.step()
            advance_lr(scheduler, cfg)
            loss_value = loss.item()  # the one sync per batch, shared with the progress display
            add_batch(totals, task.counts, loss_value, sizes)
            watch.step(sizes[0], loss_value)
            if every and step % every == 0 and step < task.steps_per_epoch:
                mid = dict(zip(totals, distributed.all_reduce_sum(*totals.values())))  # every rank reaches it
                if distributed.is_main():
                    seconds = before + time.perf_counter() - t0
                    at = dataclasses.replace(progress, batches_done=step, epoch_totals=mid, epoch_seconds=seconds)
                    save_checkpoint(checkpoint, fingerprint, model, optimizer, scheduler, at)
        seconds = before + time.perf_counter() - t0
        watch.end()  # before epoch_row, whose summary line takes the bar's place
        totals = dict(zip(totals, distributed.all_reduce_sum(*totals.values())))  # every rank's batches
        row = {"epoch": epoch, **task.epoch_row(epoch, totals, seconds, optimizer.param_groups[-1]["lr"])}
        row, out_of_time = distributed.from_main((row, over_budget(cfg, started)))
        score = row[task.monitor]
        advance_lr(scheduler, cfg, -score if task.higher_is_better else score)  # plateau minimises
        progress.record(row, score, task.higher_is_better, model)
        if on_epoch_end:
            on_epoch_end(row)
        if checkpoint and distributed.is_main():
            save_checkpoint(checkpoint, fingerprint, model, optimizer, scheduler, progress)
        # The budget is named as the reason only when it cut something: not on the last epoch, nor
        # when early stopping would end the run here anyway.
        if out_of_time and epoch < cfg.epochs and progress.bad_epochs < cfg.early_stopping_patience:
            log.info("stopping: train.max_minutes=%s reached after epoch %d of %d", cfg.max_minutes, epoch, cfg.epochs)
            stopped_by = "max_minutes"
            break
    return finish(model, progress, stopped_by, task.monitor, cfg.early_stopping_patience)


def resumed_epoch(progress: Progress, counts: tuple[str, ...]) -> tuple[int, dict[str, float], float]:
    """Where the epoch starts: after the batches a mid-epoch checkpoint had trained, with their totals
    (on rank 0 alone, as they are summed over the ranks already) and seconds; else at batch 0. The
    checkpoint's position is used once."""
    done, totals, seconds = progress.batches_done, progress.epoch_totals, progress.epoch_seconds
    progress.batches_done, progress.epoch_totals, progress.epoch_seconds = 0, {}, 0.0
    fresh = {"loss": 0.0, **dict.fromkeys(counts, 0)}
    if not done:
        return 0, fresh, 0.0
    return done, (dict(totals) if distributed.is_main() else fresh), seconds


def add_batch(totals: dict[str, float], counts: tuple[str, ...], loss_value: float, sizes: tuple[int, ...]) -> None:
    """Add one batch to the epoch's totals: its loss back to a sum (so batches of any size weigh
    right, sizes[0] being what the mean was over) and its counts."""
    totals["loss"] += loss_value * sizes[0]
    for name, n in zip(counts, sizes):
        totals[name] += n


def make_optimizer(model: nn.Module, cfg, steps_per_epoch: int):
    """AdamW (decoupled weight decay) or Adam, and its LR schedule. With `layer_lr_decay` > 1 the
    learning rates are discriminative (ULMFiT): the top layer group trains at `lr`, each group below
    it at the rate above divided by the decay, so pretrained lower layers move least."""
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(param_groups(model, cfg.lr, cfg.layer_lr_decay), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return optimizer, make_scheduler(optimizer, cfg, steps_per_epoch)


def param_groups(model: nn.Module, lr: float, decay: float) -> list[dict]:
    """One group of all parameters at `lr`, or (decay > 1, a model with `layer_groups()`, bottom
    to top) one group per layer at lr / decay ** (layers above it)."""
    if decay == 1:
        return [{"params": list(model.parameters()), "lr": lr}]
    if not hasattr(model, "layer_groups"):
        raise PipelineError(
            f"train.layer_lr_decay={decay} needs a model with layer groups "
            f"({type(model).__name__} has none); set it to 1"
        )
    groups = model.layer_groups()
    return [{"params": params, "lr": lr / decay ** (len(groups) - 1 - i)} for i, params in enumerate(groups)]


def over_budget(cfg, started: float) -> bool:
    """Whether the opt-in wall-clock budget (`max_minutes`, None: none) has run out."""
    return cfg.max_minutes is not None and (time.monotonic() - started) / 60 > cfg.max_minutes


def finish(model: nn.Module, progress: Progress, stopped_by: str, monitor: str, patience: int) -> History:
    """Restore the best weights and name what ended training (early stopping wins over the others)."""
    if progress.bad_epochs >= patience:
        log.info("early stopping: no %s improvement for %d epochs", monitor, progress.bad_epochs)
        stopped_by = "early_stopping"
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    history = History(progress.history)
    history.stopped_by = stopped_by
    return history


def resume(checkpoint: Path | None, fingerprint: str, model, optimizer, scheduler, device) -> Progress | None:
    """The epoch checkpoint's progress when it exists and was written with this `fingerprint`, with
    model, optimizer, scheduler and torch RNG restored in place (so the next epoch draws the dropout
    masks an uninterrupted run would); else None."""
    if not (checkpoint and checkpoint.exists()):
        return None
    state = torch.load(checkpoint, map_location=device, weights_only=True)
    if state["fingerprint"] != fingerprint:
        log.info("ignoring %s: it was written for other params or data", checkpoint)
        return None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"].cpu())  # map_location may have moved it to CUDA
    at = f"after epoch {state['epoch']}" + (f", batch {state['batches_done']}" if state.get("batches_done") else "")
    log.info("resuming from %s %s", checkpoint, at)
    return Progress(**{f.name: state[f.name] for f in fields(Progress) if f.name in state})  # older: no batch


def save_checkpoint(checkpoint: Path, fingerprint: str, model, optimizer, scheduler, progress: Progress) -> None:
    """Write the epoch checkpoint atomically (a kill mid-write leaves the previous one): all that the
    loop needs to go on, as plain tensors and containers, so it loads with `weights_only=True`."""
    with atomic_path(checkpoint) as tmp:
        torch.save(
            {
                "fingerprint": fingerprint,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                **vars(progress),  # epoch, history, best_val, best_state, bad_epochs
            },
            tmp,
        )
