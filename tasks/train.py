"""Stage `train`: the split's token stream → a trained RNN/GRU/LSTM language model.

Early stopping on validation loss (best weights restored), ReduceLROnPlateau or warmup+cosine,
gradient clipping, bf16 autocast on CUDA, and an epoch checkpoint that a killed run resumes from.

    python -m tasks.train [--params params.yaml] [--set lyrics.model.cell=gru]
"""

import csv
import io
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tasks import tracking
from tasks.atomic import atomic_path, write_text
from tasks.batching import batchify, get_batch, lm_stream
from tasks.cli import stage_main
from tasks.errors import PipelineError
from tasks.lineage import file_md5, lineage_tags
from tasks.models import RNNLanguageModel, detach_hidden
from tasks.params import params_hash
from tasks.vocab import load_vocab, tokens_by_split

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("params.yaml: train.device is cuda but no CUDA device is visible; set it to auto or cpu")
    return torch.device(name)


def autocast(device: torch.device):
    # bf16 needs no loss scaling, unlike fp16; on CPU autocast would only slow the RNN down.
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def estimate_loss(model: nn.Module, data: torch.Tensor, bptt: int, device: torch.device) -> float:
    """Mean cross-entropy per target token over a batchified (N, B) tensor, state carried along."""
    model.eval()
    total, count, hidden = 0.0, 0, None
    for i in range(0, data.size(0) - 1, bptt):
        x, y = (t.to(device, non_blocking=True) for t in get_batch(data, i, bptt))
        with autocast(device):
            logits, hidden = model(x, hidden)                                   # (T, B, V)
        total += nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    return total / max(count, 1)


def make_scheduler(optimizer, cfg, steps_per_epoch: int):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    warmup, total = cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def train_language_model(model: nn.Module, train_data: torch.Tensor, val_data: torch.Tensor, cfg,
                         device: torch.device, on_epoch_end: Callable[[dict], None] | None = None,
                         checkpoint: Path | None = None, fingerprint: str = "") -> list[dict]:
    """Train in place; at the end `model` holds the best weights by validation loss.

    train_data / val_data: batchified (N, B) id tensors. `checkpoint`: file written after every
    epoch; when it exists with the same `fingerprint`, training resumes from it.
    """
    model.to(device)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil((train_data.size(0) - 1) / cfg.bptt)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    history: list[dict] = []
    best_val, best_state, bad_epochs, start_epoch = math.inf, None, 0, 1

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

    started = time.monotonic()
    for epoch in range(start_epoch, cfg.epochs + 1):
        if bad_epochs >= cfg.early_stopping_patience:
            break
        model.train()
        t0, total_loss, n_tokens, hidden = time.perf_counter(), 0.0, 0, None
        for i in range(0, train_data.size(0) - 1, cfg.bptt):
            x, y = (t.to(device, non_blocking=True) for t in get_batch(train_data, i, cfg.bptt))  # (T, B)
            hidden = detach_hidden(hidden)  # truncated BPTT: keep the state, drop its history
            with autocast(device):
                logits, hidden = model(x, hidden)                                       # (T, B, V)
                loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)  # RNNs explode without it
            optimizer.step()
            if cfg.scheduler == "cosine":
                scheduler.step()
            total_loss += loss.item() * y.numel()
            n_tokens += y.numel()
        seconds = time.perf_counter() - t0
        train_loss = total_loss / n_tokens
        val_loss = estimate_loss(model, val_data, cfg.bptt, device)
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
               "train_ppl": math.exp(train_loss), "val_ppl": math.exp(val_loss),
               "lr": optimizer.param_groups[0]["lr"], "tokens_per_s": n_tokens / seconds, "seconds": seconds}
        history.append(row)
        if cfg.scheduler == "plateau":
            scheduler.step(val_loss)
        if val_loss < best_val:
            best_val, bad_epochs = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        log.info("epoch %3d | train loss %.3f ppl %7.1f | val loss %.3f ppl %7.1f | lr %.2e | %6.0f tok/s",
                 epoch, train_loss, row["train_ppl"], val_loss, row["val_ppl"], row["lr"], row["tokens_per_s"])
        if on_epoch_end:
            on_epoch_end(row)
        if checkpoint:
            with atomic_path(checkpoint) as tmp:
                torch.save({"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "rng": torch.get_rng_state(), "history": history, "best_val": best_val,
                            "best_state": best_state, "bad_epochs": bad_epochs}, tmp)
        if (time.monotonic() - started) / 60 > cfg.max_minutes:
            log.info("stopping: train.max_minutes=%s reached", cfg.max_minutes)
            break
    if bad_epochs >= cfg.early_stopping_patience:
        log.info("early stopping: no val improvement for %d epochs", bad_epochs)
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def run(params, extra_tags: dict[str, str] | None = None) -> dict:
    """Train on the split, save models/<task>/model.pt (self-describing) and the MLflow run id."""
    lp, cfg = params.lyrics, params.lyrics.train
    torch.manual_seed(cfg.seed)
    vocab = load_vocab(lp.vocab.output)
    splits = tokens_by_split(lp.split.output)
    train_data = batchify(lm_stream(splits["train"], vocab), cfg.batch_size)   # (N, B)
    val_data = batchify(lm_stream(splits["val"], vocab), min(cfg.batch_size, 8))
    if train_data.size(0) <= cfg.bptt or val_data.size(0) < 2:
        raise PipelineError(f"{lp.split.output}: corpus too small for batch_size={cfg.batch_size} x bptt={cfg.bptt}; "
                            f"add lyrics or lower lyrics.train.batch_size / bptt")
    model_args = {"vocab_size": len(vocab), **lp.model.model_dump()}
    model = RNNLanguageModel(**model_args)
    device = pick_device(cfg.device)
    # A checkpoint is resumed only for the same model, loop settings, vocabulary and split.
    fingerprint = f"{params_hash(lp.model)}-{params_hash(cfg)}-{vocab.hash}-{file_md5(lp.split.output)[:12]}"
    checkpoint = Path(cfg.checkpoint_dir) / "last.pt"

    tags = {**lineage_tags(params, lp), **(extra_tags or {})}
    run_id = tracking.start_run(params, tags, run_id=_resumable_run_id(checkpoint, fingerprint))
    with atomic_path(Path(cfg.checkpoint_dir) / "run_id") as tmp:  # a resumed run logs to the same MLflow run
        tmp.write_text(f"{fingerprint} {run_id}")
    tracking.log_params(run_id, {
        **{f"model.{k}": v for k, v in lp.model.model_dump().items()},
        **{f"train.{k}": v for k, v in cfg.model_dump().items() if k not in ("output_dir", "history", "checkpoint_dir")},
        "vocab.size": len(vocab), "data.train_tokens": train_data.numel(), "device": str(device),
    })
    history = train_language_model(model, train_data, val_data, cfg, device, tracking.epoch_logger(run_id), checkpoint, fingerprint)

    out = Path(cfg.output_dir)
    with atomic_path(out / "model.pt") as tmp:
        torch.save({"model_args": model_args, "state_dict": model.state_dict(), "itos": vocab.itos,
                    "vocab_hash": vocab.hash, "tokenizer": lp.tokenize.model_dump(),
                    "params": lp.model_dump(mode="json", by_alias=True), "history": history}, tmp)
    write_text(history_csv(history), cfg.history)
    tracking.save_run_id(out, run_id)
    checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume
    best = min(history, key=lambda r: r["val_loss"])
    return {"run_id": run_id, "epochs": len(history), "best_val_ppl": best["val_ppl"]}


def _resumable_run_id(checkpoint: Path, fingerprint: str) -> str | None:
    marker = checkpoint.parent / "run_id"
    if checkpoint.exists() and marker.exists():
        saved_fp, _, run_id = marker.read_text().partition(" ")
        return run_id if saved_fp == fingerprint else None
    return None


if __name__ == "__main__":
    stage_main(run, __doc__)
