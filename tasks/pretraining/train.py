"""Pretraining the general-Chinese base language model: the lyrics model's architecture and loss,
trained by the shared loop (`fit`) on epochs of `epoch_tokens` tokens streamed from the corpus
(tasks/pretraining/stream.py). Under torchrun each process takes its columns of every epoch's
batch, as the lyrics trainer does."""

import logging
import math
from functools import partial

import torch

from tasks.common.errors import PipelineError
from tasks.lyrics.batching import batchify
from tasks.lyrics.model import RNNLanguageModel
from tasks.pretraining.stream import Lines, epoch_ids
from tasks.text.vocab import Vocab
from tasks.training import distributed
from tasks.training.language_model import epoch_row, output_args, window_loss, windows
from tasks.training.loop import TaskPieces

log = logging.getLogger(__name__)


def base_model_args(pp, vocab: Vocab) -> dict:
    """The base model's constructor args: pretrain.model for this vocabulary."""
    return {"vocab_size": len(vocab), **pp.model.model_dump(), **output_args(pp.model, len(vocab))}


def pretraining_pieces(
    model: RNNLanguageModel, lines: Lines, vocab: Vocab, corpus_tokens: int, val_stream: torch.Tensor, cfg, device
) -> TaskPieces:
    """What `fit` needs: epoch k's batches are its `epoch_tokens` ids from the cycled corpus,
    batchified (N, B) and cut to this rank's columns; validation reads the bounded val stream."""
    if cfg.batch_size < distributed.world_size():
        raise PipelineError(
            f"params.yaml: pretrain.train.batch_size={cfg.batch_size} is split across "
            f"{distributed.world_size()} processes; set it to at least that"
        )
    rows = cfg.epoch_tokens // cfg.batch_size
    val_data = batchify(val_stream, min(cfg.batch_size, 8))  # (N_val, <=8)
    if rows <= cfg.bptt or val_data.size(0) < 2:
        raise PipelineError(
            f"params.yaml: pretrain.train.epoch_tokens={cfg.epoch_tokens} (or the validation text) is too small "
            f"for batch_size={cfg.batch_size} x bptt={cfg.bptt}; raise epoch_tokens or pretrain.val_fraction"
        )

    def batches(epoch: int):
        ids = epoch_ids(lines, vocab, epoch, cfg.epoch_tokens, corpus_tokens)  # (epoch_tokens,)
        return windows(distributed.shard_columns(batchify(ids, cfg.batch_size)), cfg.bptt)  # (T, B / world)

    return TaskPieces(
        batches=batches,
        batch_loss=partial(window_loss, device=device),
        epoch_row=partial(
            epoch_row, model=model, val_data=distributed.shard_columns(val_data), bptt=cfg.bptt, device=device
        ),
        counts=("tokens",),
        steps_per_epoch=math.ceil((rows - 1) / cfg.bptt),
        find_unused_parameters=model.output == "adaptive",
    )
