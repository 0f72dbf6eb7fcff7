"""Training the language model: truncated BPTT over a batchified stream (state carried between
windows), validation loss per epoch, then the continuous cache fitted on validation."""

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tasks.common import tracking
from tasks.common.errors import PipelineError
from tasks.common.lineage import file_md5
from tasks.lyrics.batching import batchify, lm_stream
from tasks.lyrics.bits_per_char import bits_per_char, scored_chars, unk_spelling_bits
from tasks.lyrics.finetune import model_from_base
from tasks.lyrics.model import RNNLanguageModel
from tasks.lyrics.neural_cache import fit_cache
from tasks.text.vocab import tokens_by_split
from tasks.training import distributed
from tasks.training.base_model import load_base
from tasks.training.language_model import (
    language_model_checkpoint,
    language_model_pieces,
    loss_totals,
    output_args,
)
from tasks.training.loop import fit
from tasks.training.run import prepare_run, save_outputs

log = logging.getLogger(__name__)


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


def build_model(lp, vocab) -> tuple[RNNLanguageModel, dict]:
    """The model to train and its constructor args: from the pretrained base when
    `lyrics.base_model` is set (its architecture, lyrics.model's dropouts), else from lyrics.model."""
    if lp.base_model:
        return model_from_base(load_base(lp.base_model, lp.tokenize.level), vocab, lp.model)
    model_args = {"vocab_size": len(vocab), **lp.model.model_dump(), **output_args(lp.model, len(vocab))}
    return RNNLanguageModel(**model_args), model_args


def load_streams(lp, vocab, splits: dict[str, list[list[str]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The split's tokens as this rank's batchified train and val columns (N, B / world), the whole
    validation stream (N,) that the cache is fitted on, and the train token count of all ranks."""
    cfg = lp.train
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
    splits = tokens_by_split(lp.split.output)
    train_data, val_data, val_stream, n_train_tokens = load_streams(lp, vocab, splits)
    model, model_args = build_model(lp, vocab)
    logged = {
        "vocab.size": len(vocab),
        "data.train_tokens": n_train_tokens,
        "device": str(device),
        "base_model": lp.base_model or "none",
        **{f"arch.{k}": v for k, v in model_args.items()},  # what was built (a base decides the sizes)
    }
    data_id = file_md5(lp.split.output) + (f"-{file_md5(lp.base_model)}" if lp.base_model else "")
    run_id, on_epoch_end, checkpoint, fingerprint = prepare_run(
        params, lp, vocab, task, extra_tags, logged, on_epoch, data_id=data_id
    )
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
        result["val_bits_per_char"] = validation_bits_per_char(
            model, lp, vocab, splits["val"], val_stream, device, run_id
        )
        cache = fit_language_model_cache(model, val_stream, run_id) if cfg.continuous_cache else None
        save_outputs(
            lp,
            run_id,
            checkpoint,
            language_model_checkpoint(model, model_args, vocab, lp.tokenize.model_dump(), cache),
            history,
            history.stopped_by,
        )
        result["cache"] = cache
    return result


def validation_bits_per_char(
    model, lp, vocab, val_lines: list[list[str]], val_stream: torch.Tensor, device, run_id: str
) -> float:
    """The trained model's bits per character on the whole validation text, charged as evaluate
    charges the test text (tasks/lyrics/bits_per_char.py): what tokenizations and bases are chosen
    by, since perplexities of different vocabularies cannot be compared."""
    nll, _ = loss_totals(model, batchify(val_stream, 1), lp.train.bptt, device)  # summed over N-1 targets
    bpc = bits_per_char(nll, unk_spelling_bits(val_lines, vocab), scored_chars(val_lines))
    log.info("validation: %.3f bits per character (the model alone)", bpc)
    tracking.log_metrics(run_id, {"val_bits_per_char": bpc})
    return bpc


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
