"""ULMFiT's second step for the review classifier: the pretrained base fine-tuned as a language
model on the train split's review text, so its encoder knows how reviews are written before it
learns what they mean. Only train text is learned from; the val text scores each epoch (and picks
the weights kept), the test text is never read here.

The fine-tuned weights are kept beside the classifier's checkpoint (`reviews.train.checkpoint_dir`)
with the fingerprint of what made them: a classifier killed after this step resumes without
fine-tuning again."""

import logging
import math
from pathlib import Path

import torch

from tasks.common import tracking
from tasks.common.atomic import atomic_path, write_text
from tasks.common.errors import PipelineError
from tasks.common.lineage import file_md5
from tasks.common.params import params_hash
from tasks.lyrics.batching import batchify, lm_stream
from tasks.lyrics.finetune import model_from_base
from tasks.lyrics.model import RNNLanguageModel
from tasks.text.vocab import Vocab
from tasks.training.base_model import load_base
from tasks.training.language_model import language_model_pieces
from tasks.training.loop import fit
from tasks.training.run import history_csv

log = logging.getLogger(__name__)
# reviews.lm fields that do not change the fine-tuned weights: a copy of the project reuses them
WHERE_NOT_WHAT = {"output_dir", "history", "checkpoint_dir", "device", "num_threads"}


def lm_data(train_tokens: list[list[str]], val_tokens: list[list[str]], vocab: Vocab, cfg, source: str):
    """The review texts as batchified LM streams (N, B), each review followed by <eos>."""
    train_data = batchify(lm_stream(train_tokens, vocab), cfg.batch_size)  # (N, B)
    val_data = batchify(lm_stream(val_tokens, vocab), min(cfg.batch_size, 8))  # (N_val, B_val)
    if train_data.size(0) <= cfg.bptt or val_data.size(0) < 2:
        raise PipelineError(
            f"{source}: too little review text to fine-tune the language model with batch_size="
            f"{cfg.batch_size} x bptt={cfg.bptt}; lower reviews.lm.batch_size / bptt or set reviews.lm.epochs: 0"
        )
    return train_data, val_data


def finetuned_language_model(
    tp, vocab: Vocab, train_tokens, val_tokens, device: torch.device, run_id: str | None
) -> tuple[RNNLanguageModel, dict, list[dict]]:
    """The base fine-tuned on the train reviews (or as it is, with `reviews.lm.epochs: 0`), its
    constructor args and its epoch history (val_ppl per epoch, logged to MLflow as lm_*)."""
    cfg = tp.lm
    model, args = model_from_base(load_base(tp.base_model, tp.tokenize.level, "reviews.base_model"), vocab, cfg)
    if cfg.epochs == 0:
        write_text("", cfg.history)  # the stage's declared output: no epochs
        return model, args, []
    settings = params_hash(cfg, exclude=WHERE_NOT_WHAT)
    fingerprint = f"{settings}-{vocab.hash}-{file_md5(tp.split.output)[:12]}-{file_md5(tp.base_model)[:12]}"
    done = Path(tp.train.checkpoint_dir) / "language_model.pt"
    if done.exists():
        saved = torch.load(done, map_location="cpu", weights_only=True)
        if saved["fingerprint"] == fingerprint:
            model.load_state_dict(saved["state_dict"])
            log.info("language model: fine-tuned already (%s), reused", done)
            return model, args, saved["history"]
    train_data, val_data = lm_data(train_tokens, val_tokens, vocab, cfg, tp.split.output)
    log.info("language model: fine-tuning the base on %d train tokens of review text", train_data.numel())
    pieces = language_model_pieces(model, train_data, val_data, cfg, device)
    on_epoch = tracking.epoch_logger(run_id, prefix="lm_") if run_id else None
    history = list(fit(model, pieces, cfg, device, on_epoch, Path(cfg.checkpoint_dir) / "last.pt", fingerprint))
    (Path(cfg.checkpoint_dir) / "last.pt").unlink(missing_ok=True)
    with atomic_path(done) as tmp:
        torch.save({"fingerprint": fingerprint, "state_dict": model.state_dict(), "history": history}, tmp)
    write_text(history_csv(history), cfg.history)
    best = min(history, key=lambda r: r["val_loss"])
    log.info("language model: val perplexity %.1f (epoch %d)", math.exp(best["val_loss"]), best["epoch"])
    return model, args, history
