"""The language-model training pieces the lyrics model and the pretrained base share: truncated
BPTT windows over a batchified (N, B) stream with the state carried between them, the loss of a
window, validation totals, the epoch's history row, and the output layer's args."""

import logging
import math
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from torch import nn

from tasks.common.errors import PipelineError
from tasks.lyrics.batching import get_batch
from tasks.lyrics.model import detach_hidden
from tasks.training import distributed
from tasks.training.device import autocast
from tasks.training.loop import TaskPieces

log = logging.getLogger(__name__)


@torch.no_grad()
def loss_totals(model: nn.Module, data: torch.Tensor, bptt: int, device: torch.device) -> tuple[float, int]:
    """(summed NLL, target count) over a batchified (N, B) tensor, state carried along; a rank's
    shard may have no columns (0.0, 0)."""
    model.eval()
    total, count, hidden = 0.0, 0, None
    if data.size(1) == 0:
        return total, count
    for i in range(0, data.size(0) - 1, bptt):
        x, y = (t.to(device, non_blocking=True) for t in get_batch(data, i, bptt))  # (T, B)
        with autocast(device):
            loss, hidden = model(x, hidden, y)  # mean NLL of the window
        total += loss.item() * y.numel()
        count += y.numel()
    return total, count


def estimate_loss(model: nn.Module, data: torch.Tensor, bptt: int, device: torch.device) -> float:
    """Mean cross-entropy per target token over a batchified (N, B) tensor, state carried along."""
    total, count = loss_totals(model, data, bptt, device)
    return total / max(count, 1)


def windows(data: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The training windows of a batchified (N, B) stream, in order (the hidden state carries from
    one to the next): inputs (T, B) and next-token targets (T, B)."""
    for i in range(0, data.size(0) - 1, bptt):
        yield get_batch(data, i, bptt)


def window_loss(net: nn.Module, batch, hidden, device: torch.device) -> tuple[torch.Tensor, Any, tuple[int]]:
    """Mean NLL of one window, the state it leaves, and its target count."""
    x, y = (t.to(device, non_blocking=True) for t in batch)  # (T, B)
    hidden = detach_hidden(hidden)  # truncated BPTT: keep the state, drop its history
    with autocast(device):
        loss, hidden = net(x, hidden, y)  # mean NLL of (T, B)
    return loss, hidden, (y.numel(),)


def epoch_row(
    epoch: int, totals: dict, seconds: float, lr: float, model: nn.Module, val_data: torch.Tensor, bptt: int, device
) -> dict:
    """Validate on every rank's columns and log the epoch: its history row."""
    train_loss = totals["loss"] / totals["tokens"]
    val_total, val_count = distributed.all_reduce_sum(*loss_totals(model, val_data, bptt, device))
    val_loss = val_total / max(val_count, 1)
    row = {
        "train_loss": train_loss,
        "val_loss": val_loss,
        "train_ppl": math.exp(train_loss),
        "val_ppl": math.exp(val_loss),
        "lr": lr,
        "tokens_per_s": totals["tokens"] / seconds,
        "seconds": seconds,
    }
    log.info(
        "epoch %3d | train loss %.3f ppl %7.1f | val loss %.3f ppl %7.1f | lr %.2e | %6.0f tok/s",
        epoch,
        train_loss,
        row["train_ppl"],
        val_loss,
        row["val_ppl"],
        row["lr"],
        row["tokens_per_s"],
    )
    return row


def output_args(model_cfg, vocab_size: int) -> dict:
    """The output layer's constructor args for this vocabulary: adaptive cutoffs at or beyond the
    vocabulary size are dropped (the default [2000, 10000] fits vocabularies of any size above 2000)."""
    if model_cfg.output != "adaptive":
        return {}
    cutoffs = [c for c in model_cfg.adaptive_cutoffs if c < vocab_size]
    if not cutoffs:
        raise PipelineError(
            f"params.yaml: model.adaptive_cutoffs {model_cfg.adaptive_cutoffs} are all >= the "
            f"vocabulary size {vocab_size}; set a cutoff below it (or output: softmax)"
        )
    if cutoffs != model_cfg.adaptive_cutoffs:
        log.info("adaptive softmax: cutoffs %s (dropped those >= the vocabulary size %d)", cutoffs, vocab_size)
    return {"adaptive_cutoffs": cutoffs}


def language_model_checkpoint(model: nn.Module, model_args: dict, vocab, tokenizer: dict, cache: dict | None) -> dict:
    """What a self-describing language-model checkpoint holds besides the run's params and history
    (tasks/training/run.py:save_outputs), as tasks/serving/lyrics_generator.py:load_checkpoint
    reads it back: the lyrics model and the pretrained base share the format."""
    return {
        "model_args": model_args,
        "state_dict": model.state_dict(),
        "itos": vocab.itos,
        "vocab_hash": vocab.hash,
        "tokenizer": tokenizer,
        "cache": cache,
    }


def language_model_pieces(
    model: nn.Module, train_data: torch.Tensor, val_data: torch.Tensor, cfg, device: torch.device
) -> TaskPieces:
    """What `fit` needs to train the language model on batchified (N, B) train / val tensors
    (distributed: this rank's columns; every rank has the same N, hence the same number of steps)."""
    return TaskPieces(
        batches=lambda epoch: windows(train_data, cfg.bptt),  # the same windows every epoch
        batch_loss=partial(window_loss, device=device),
        epoch_row=partial(epoch_row, model=model, val_data=val_data, bptt=cfg.bptt, device=device),
        counts=("tokens",),
        steps_per_epoch=math.ceil((train_data.size(0) - 1) / cfg.bptt),
        # The adaptive output computes a tail cluster only for windows with a target in it: a
        # parameter can go unused in a step, which DDP must be told about.
        find_unused_parameters=getattr(model, "output", "") == "adaptive",
    )
