"""Re-scoring a registered lyrics model on another test text: the champion/challenger gate compares
bits per character of the model alone on the challenger's test text, so a champion trained with
another split, tokenization or vocabulary is measured on the same text before it is ranked
(tasks/common/registry.py), never promoted over or kept on scores that measured different things."""

import logging
import tempfile
from pathlib import Path

import mlflow

from tasks.lyrics.batching import lm_stream
from tasks.lyrics.bits_per_char import bits_per_char, scored_chars, text_lines, total_nll, unk_spelling_bits
from tasks.lyrics.neural_cache import perplexities
from tasks.serving.lyrics_generator import load_checkpoint
from tasks.text.segment import segment
from tasks.text.vocab import tokens_by_split

log = logging.getLogger(__name__)


def text_bits_per_char(model_pt: Path, texts: list[str]) -> float:
    """The checkpoint's bits per character (no cache) on `texts`, cut as its own training text was."""
    model, vocab, tok = load_checkpoint(model_pt)
    lines = [
        segment(text, tok["level"], tok["hmm"], tok.get("user_dict"), tok.get("backend", "jieba")) for text in texts
    ]
    stream = lm_stream(lines, vocab)  # (N,)
    ppl, _ = perplexities(model, stream, None)
    return bits_per_char(total_nll(ppl, stream.numel() - 1), unk_spelling_bits(lines, vocab), scored_chars(lines))


def champion_bits_per_char(tp, version: str) -> float:
    """Registered `lyrics-lm` version `version` on this run's test text (the split's test lines)."""
    texts = text_lines(tokens_by_split(tp.split.output)["test"])
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{tp.registry.model_name}/{version}", dst_path=tmp))
        [model_pt] = list(local.rglob("model.pt"))  # the pyfunc's checkpoint artifact
        return text_bits_per_char(model_pt, texts)
