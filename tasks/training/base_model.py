"""The pretrained base a task fine-tunes from (`<task>.base_model`, written by tasks/pretrain.py):
its checkpoint read back with the one-line errors a user can act on."""

from pathlib import Path

import torch

from tasks.common.errors import PipelineError


def load_base(path: str | Path, level: str, key: str = "lyrics.base_model") -> dict:
    """The base model.pt (model_args, state_dict, itos, tokenizer), checked against the task's
    tokenization `level`: the base's vocabulary is only reusable for text cut the same way."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(
            f"{path}: no pretrained base model; run the pretrain stage first (python -m tasks.pretrain, "
            f"or the flow), or set {key}: null to train from scratch"
        )
    base = torch.load(path, map_location="cpu", weights_only=True)
    if base["tokenizer"]["level"] != level:
        raise PipelineError(
            f"{path}: the base model is {base['tokenizer']['level']}-level but tokenize.level is {level}; "
            f"set tokenize.level: {base['tokenizer']['level']}, or {key}: null"
        )
    return base
