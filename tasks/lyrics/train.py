"""Training the language model: truncated BPTT over a batchified stream (state carried between
windows), validation loss per epoch, then the continuous cache fitted on validation."""

import logging
import math
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tasks.common import tracking
from tasks.common.errors import PipelineError
from tasks.lyrics.batching import batchify, get_batch, lm_stream
from tasks.lyrics.model import RNNLanguageModel, detach_hidden
from tasks.lyrics.neural_cache import fit_cache
from tasks.text.vocab import tokens_by_split
from tasks.training import distributed
from tasks.training.device import autocast
from tasks.training.loop import TaskPieces, fit
from tasks.training.run import prepare_run, save_outputs

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


def train_language_model(
    model: nn.Module,
    train_data: torch.Tensor,
    val_data: torch.Tensor,
    cfg,
    device: torch.device,
    on_epoch_end: Callable[[dict], None] | None = None,
    checkpoint: Path | None = None,
    fingerprint: str = "",
) -> list[dict]:
    """Train in place; at the end `model` holds the best weights by validation loss.

    train_data / val_data: batchified (N, B) id tensors. `checkpoint`: file written after every
    epoch; when it exists with the same `fingerprint`, training resumes from it.
    """
    pieces = language_model_pieces(model, train_data, val_data, cfg, device)
    return fit(model, pieces, cfg, device, on_epoch_end, checkpoint, fingerprint)


def output_args(model_cfg, vocab_size: int) -> dict:
    """The output layer's constructor args for this vocabulary: adaptive cutoffs at or beyond the
    vocabulary size are dropped (the default [2000, 10000] fits vocabularies of any size above 2000)."""
    if model_cfg.output != "adaptive":
        return {}
    cutoffs = [c for c in model_cfg.adaptive_cutoffs if c < vocab_size]
    if not cutoffs:
        raise PipelineError(
            f"params.yaml: lyrics.model.adaptive_cutoffs {model_cfg.adaptive_cutoffs} are all >= the "
            f"vocabulary size {vocab_size}; set a cutoff below it (or output: softmax)"
        )
    if cutoffs != model_cfg.adaptive_cutoffs:
        log.info("adaptive softmax: cutoffs %s (dropped those >= the vocabulary size %d)", cutoffs, vocab_size)
    return {"adaptive_cutoffs": cutoffs}


def load_streams(lp, vocab) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The split as this rank's batchified train and val columns (N, B / world), the whole
    validation stream (N,) that the cache is fitted on, and the train token count of all ranks."""
    cfg = lp.train
    splits = tokens_by_split(lp.split.output)
    world = distributed.world_size()
    if cfg.batch_size < world:
        raise PipelineError(
            f"params.yaml: lyrics.train.batch_size={cfg.batch_size} is split across {world} processes; "
            f"set it to at least {world} or lower --nproc_per_node"
        )
    # Columns are cut once for all processes, then each takes its block of them (N, B / world).
    train_data = batchify(lm_stream(splits["train"], vocab), cfg.batch_size)  # (N, B)
    val_stream = lm_stream(splits["val"], vocab)  # (N,): also what the cache is fitted on
    val_data = batchify(val_stream, min(cfg.batch_size, 8))
    if train_data.size(0) <= cfg.bptt or val_data.size(0) < 2:
        raise PipelineError(
            f"{lp.split.output}: corpus too small for batch_size={cfg.batch_size} x bptt={cfg.bptt}; "
            f"add lyrics or lower lyrics.train.batch_size / bptt"
        )
    shard = distributed.shard_columns
    return shard(train_data), shard(val_data), val_stream, train_data.numel()


def train(params, lp, vocab, device: torch.device, extra_tags: dict[str, str] | None, task: str, on_epoch=None) -> dict:
    """Train the language model on the split; save models/<task>/model.pt and the MLflow run id."""
    cfg = lp.train
    train_data, val_data, val_stream, n_train_tokens = load_streams(lp, vocab)
    model_args = {"vocab_size": len(vocab), **lp.model.model_dump(), **output_args(lp.model, len(vocab))}
    model = RNNLanguageModel(**model_args)
    logged = {"vocab.size": len(vocab), "data.train_tokens": n_train_tokens, "device": str(device)}
    run_id, on_epoch_end, checkpoint, fingerprint = prepare_run(params, lp, vocab, task, extra_tags, logged, on_epoch)
    pieces = language_model_pieces(model, train_data, val_data, cfg, device)
    history = fit(model, pieces, cfg, device, on_epoch_end, checkpoint, fingerprint)
    best = min(history, key=lambda r: r["val_loss"])
    result = {
        "run_id": run_id,
        "epochs": len(history),
        "best_val_ppl": best["val_ppl"],
        "stopped_by": history.stopped_by,
    }
    if distributed.is_main():
        cache = fit_language_model_cache(model, val_stream, run_id) if cfg.continuous_cache else None
        save_outputs(
            lp,
            run_id,
            checkpoint,
            {
                "model_args": model_args,
                "state_dict": model.state_dict(),
                "itos": vocab.itos,
                "vocab_hash": vocab.hash,
                "tokenizer": lp.tokenize.model_dump(),
                "cache": cache,
            },
            history,
            history.stopped_by,
        )
        result["cache"] = cache
    return result


def fit_language_model_cache(model: RNNLanguageModel, val_stream: torch.Tensor, run_id: str) -> dict:
    """Fit the continuous cache's three settings on the validation stream (no training) and log them."""
    cache = fit_cache(model, val_stream)
    log.info(
        "continuous cache: theta %.1f, lambda %.1f, window %d: validation perplexity %.1f -> %.1f%s",
        cache["theta"],
        cache["lam"],
        cache["window"],
        cache["val_ppl_without"],
        cache["val_ppl_with"],
        "" if cache["lam"] else " (off: it does not help on this validation split)",
    )
    tracking.log_params(run_id, {f"cache.{k}": cache[k] for k in ("theta", "lam", "window")})
    tracking.log_metrics(
        run_id, {"val_ppl_without_cache": cache["val_ppl_without"], "val_ppl_with_cache": cache["val_ppl_with"]}
    )
    return cache
