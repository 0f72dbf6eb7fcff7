"""Registering the pretrained base: `zh-lm-base`, served like the lyrics model (start text in,
generated text out, tasks/serving/lyrics_pyfunc.py), gated on validation bits per character of the
pretraining corpus (lower is better)."""

from pathlib import Path

import pandas as pd

from tasks.common.registry import ServedModel, register_version
from tasks.serving.lyrics_pyfunc import SAMPLING_DEFAULTS, LyricsGenerator


def register_base(params, pp, metrics: dict, extra_tags: dict[str, str]) -> dict:
    """Register the base model.pt of this pretraining run; the alias moves only when it scores
    better on the same validation text and vocabulary."""
    start = "今天"
    served = ServedModel(
        LyricsGenerator(),
        input_example=pd.DataFrame({"start": [start]}),
        output_example=pd.DataFrame({"start": [start], "lyrics": [start + "..."], "status": ["ok"]}),
        inference_params=SAMPLING_DEFAULTS,
        score_key="val_bits_per_char",
        lower_is_better=True,
    )
    checkpoint = {"checkpoint": str(Path(pp.train.output_dir) / "model.pt")}
    return register_version(params, pp, served, checkpoint, metrics, extra_tags, "pretrain")
