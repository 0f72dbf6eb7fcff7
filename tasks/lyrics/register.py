"""Registering the language model: `lyrics-lm`, a pyfunc that takes start words and returns lyrics
(sampling set per call), gated on test perplexity (lower is better)."""

import pandas as pd

from tasks.common.registry import ServedModel, register_version
from tasks.serving.lyrics_pyfunc import SAMPLING_DEFAULTS, LyricsGenerator


def register(params, tp, metrics: dict, checkpoint: dict, extra_tags: dict[str, str], task: str) -> dict:
    """The register stage of this task."""
    start = tp.evaluate.sample_starts[0]
    served = ServedModel(
        LyricsGenerator(),
        input_example=pd.DataFrame({"start": [start]}),
        output_example=pd.DataFrame({"start": [start], "lyrics": [start + "..."], "status": ["ok"]}),
        inference_params=SAMPLING_DEFAULTS,
        score_key="test_perplexity",
        lower_is_better=True,
    )
    return register_version(params, tp, served, checkpoint, metrics, extra_tags, task)
