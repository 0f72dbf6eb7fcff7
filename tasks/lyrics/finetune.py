"""Starting the lyrics model from the pretrained base (ULMFiT's first step, Howard & Ruder 2018):
the base's architecture and weights, its embedding rows kept for the tokens it knows, and the
tokens the lyrics add to its vocabulary started at the mean of the base's embedding."""

import logging

import torch

from tasks.common.errors import PipelineError
from tasks.lyrics.model import RNNLanguageModel
from tasks.text.vocab import Vocab

log = logging.getLogger(__name__)
REGULARISERS = ("dropout", "embedding_dropout", "weight_dropout")  # from lyrics.model: they shape training only


def finetune_args(base: dict, vocab: Vocab, model_cfg) -> dict:
    """The base's constructor args for the extended vocabulary, with lyrics.model's dropouts."""
    return {**base["model_args"], "vocab_size": len(vocab), **{k: getattr(model_cfg, k) for k in REGULARISERS}}


def model_from_base(base: dict, vocab: Vocab, model_cfg) -> tuple[RNNLanguageModel, dict]:
    """The lyrics model initialised from the base checkpoint, and its constructor args. `vocab`
    must start with the base's tokens (the vocab stage builds it so)."""
    n_base = len(base["itos"])
    if vocab.itos[:n_base] != base["itos"]:
        raise PipelineError(
            "the task's vocabulary does not start with the base model's; rerun the vocab stage "
            "(python -m tasks.vocab --task lyrics|reviews) after pretraining"
        )
    if base["model_args"].get("output") == "adaptive":
        raise PipelineError("fine-tuning needs a base with output: softmax; set pretrain.model.output: softmax")
    args = finetune_args(base, vocab, model_cfg)
    model = RNNLanguageModel(**args)
    state = dict(base["state_dict"])
    for key in ("embedding.weight", "decoder.weight", "decoder.bias"):
        if key in state:  # (V_base, E) or (V_base,) → (V, E) or (V,): new rows at the base's mean
            rows = state[key]
            extra = rows.mean(0, keepdim=True).expand(len(vocab) - n_base, *rows.shape[1:])
            state[key] = torch.cat([rows, extra])
    model.load_state_dict(state)
    log.info(
        "fine-tuning from the base: %s %d x %d, %d of %d tokens pretrained",
        args["cell"],
        args["num_layers"],
        args["hidden_size"],
        n_base,
        len(vocab),
    )
    return model, args
