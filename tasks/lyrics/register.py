"""Registering the language model: `lyrics-lm`, a pyfunc that takes start words and returns lyrics
(sampling set per call, defaults chosen on validation by evaluate), gated on test bits per character of
the model alone (lower is better; a champion measured on another test text is re-scored on this one,
tasks/lyrics/rescore.py), described by its model card (tasks/lyrics/card.py)."""

from functools import partial
from pathlib import Path

import pandas as pd

from tasks.common.registry import ServedModel, register_version
from tasks.lyrics.card import card
from tasks.lyrics.rescore import champion_bits_per_char
from tasks.serving.lyrics_pyfunc import LyricsGenerator, sampling_defaults


def register(params, tp, metrics: dict, checkpoint: dict, extra_tags: dict[str, str], task: str) -> dict:
    """The register stage of this task."""
    start = tp.evaluate.sample_starts[0]
    served = ServedModel(
        LyricsGenerator(),
        input_example=pd.DataFrame({"start": [start]}),
        output_example=pd.DataFrame({"start": [start], "lyrics": [start + "..."], "status": ["ok"]}),
        inference_params=sampling_defaults(Path(tp.evaluate.output_dir) / "sampling.json"),
        score_key="test_bits_per_char",
        lower_is_better=True,
        card=card(tp, metrics, checkpoint["checkpoint"]),
        comparable_on="eval_text_hash",  # bits per character compare across tokenizations and vocabularies
        rescore=partial(champion_bits_per_char, tp),
    )
    return register_version(params, tp, served, checkpoint, metrics, extra_tags, task)
