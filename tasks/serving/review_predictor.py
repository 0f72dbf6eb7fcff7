"""The review predictor: a loaded classifier checkpoint with its preprocessing, raw texts in,
labels and probabilities out, or a status saying why there is no label. Used by evaluate,
`tasks.predict` and the served pyfunc; it imports no training code (and so no scikit-learn)."""

import argparse
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tasks.common.errors import PipelineError
from tasks.reviews.batching import bucket_batches, encode_texts, pad_batch
from tasks.reviews.encoder_classifier import EncoderClassifier
from tasks.reviews.model import RNNClassifier
from tasks.text.review_rules import clean_review, review_rules
from tasks.text.segment import segment
from tasks.text.vocab import SPECIALS, Vocab

# A token with a letter, digit or CJK character. Known punctuation alone (`！！`, `hello world!`)
# is not something to judge: the label would come from the model's bias, not from the text.
WORD = re.compile(r"[^\W_]")
# A text longer than PREFIX_CHARS_PER_TOKEN * max_len characters is cleaned and segmented from that
# prefix only when the prefix alone holds more than max_len + BOUNDARY_TOKENS tokens: the window is
# then full long before the cut, and a 50 KB or 1 MB text costs what a 2,000-character one does.
PREFIX_CHARS_PER_TOKEN = 20
BOUNDARY_TOKENS = 16


CLASSIFIERS = {"rnn": RNNClassifier, "encoder": EncoderClassifier}  # checkpoint "architecture" → class


@dataclass(frozen=True)
class Prediction:
    """One text's answer. `status`: "ok" (label and probability set), "empty" (nothing left after
    cleaning: blank, whitespace, only tags or links) or "unknown" (no word the vocabulary knows);
    label and probability are None unless ok. `known_share`: the share of the tokens the model
    reads that its vocabulary knows (None when empty). `truncated`: the text had more tokens than
    the model's `max_len`; only the first `max_len` were read (status and share are of those)."""

    label: object
    probability: float | None
    status: str
    known_share: float | None
    truncated: bool

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def classify(model: nn.Module, seqs: list[list[int]], device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, C) for id sequences, in input order (batched by length for speed)."""
    model.eval()
    probs = np.zeros((len(seqs), model.num_classes), dtype=np.float32)
    for idx in bucket_batches([len(s) for s in seqs], batch_size, shuffle=False):
        x, lengths = pad_batch(seqs, idx)  # (B, T), (B,)
        logits = model(x.to(device), lengths)  # (B, C)
        probs[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probs


class ReviewModel:
    """A loaded classifier checkpoint with its preprocessing: raw texts in, labels and probabilities out."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        ckpt = torch.load(path, map_location=device, weights_only=True)
        if ckpt.get("kind") != "classifier":
            raise PipelineError(f"{path}: not a review classifier checkpoint (train one with `make reviews`)")
        # "architecture": absent in checkpoints older than the pretrained encoder (all RNNs then)
        model_class = CLASSIFIERS[ckpt.get("architecture", "rnn")]
        self.model = model_class(**ckpt["model_args"]).to(device).eval()
        self.model.load_state_dict(ckpt["state_dict"])
        self.vocab, self.tokenizer, self.classes = Vocab(ckpt["itos"]), ckpt["tokenizer"], ckpt["classes"]
        self.language_model_history = ckpt.get("lm_history", [])  # init: pretrained: the review LM's epochs
        self.known = set(self.vocab.itos) - set(SPECIALS)
        self.rules = review_rules(argparse.Namespace(**ckpt["clean"]))
        self.device = torch.device(device)

    def tokens(self, text: str) -> list[str]:
        """Raw text → the tokens training saw (same cleaning rules, same segmentation: level, HMM,
        user dictionary and backend as the checkpoint records them; jieba for checkpoints older
        than the backend setting)."""
        cleaned = clean_review("" if text is None else str(text), self.rules)
        tk = self.tokenizer
        return segment(cleaned, tk["level"], tk["hmm"], tk.get("user_dict"), tk.get("backend", "jieba"))

    def window(self, text: str) -> tuple[list[str], bool]:
        """The tokens the model reads (the first max_len) and whether the text had more."""
        text = "" if text is None else str(text)
        max_len = self.model.max_len
        cap = PREFIX_CHARS_PER_TOKEN * max_len
        if len(text) > cap:
            tokens = self.tokens(text[:cap])
            if len(tokens) > max_len + BOUNDARY_TOKENS:
                return tokens[:max_len], True
        tokens = self.tokens(text)  # short, or a prefix too sparse to fill the window: the whole text
        return tokens[:max_len], len(tokens) > max_len

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(N, C) class probabilities for every text, whatever its status: empty or unknown text
        becomes [<unk>]. What evaluate-style callers use; `predictions` says when not to trust it."""
        seqs = encode_texts([self.window(t)[0] for t in texts], self.vocab, self.model.max_len)
        return classify(self.model, seqs, self.device)

    def predictions(self, texts: list[str]) -> list[Prediction]:
        """One Prediction per text, in order; only the texts with a known word reach the model."""
        rows: list[Prediction | None] = []
        judged, seqs, flags = [], [], []  # the texts that get a label: index, ids, (share, truncated)
        for i, text in enumerate(texts):
            window, truncated = self.window(text)
            if not window:
                rows.append(Prediction(None, None, "empty", None, False))
                continue
            known = [t for t in window if t in self.known]
            share = len(known) / len(window)
            if not any(WORD.search(t) for t in known):
                rows.append(Prediction(None, None, "unknown", share, truncated))
                continue
            rows.append(None)
            judged.append(i)
            seqs.append(self.vocab.encode(window))
            flags.append((share, truncated))
        if seqs:
            probs = classify(self.model, seqs, self.device)  # (N judged, C)
            best = probs.argmax(1)
            for j, i in enumerate(judged):
                share, truncated = flags[j]
                label = self.classes[int(best[j])]
                rows[i] = Prediction(label, float(probs[j, best[j]]), "ok", share, truncated)
        return rows

    def predict(self, texts: list[str]) -> tuple[list, list[float | None]]:
        """(labels, probabilities), None for a text whose status is not ok."""
        rows = self.predictions(texts)
        return [r.label for r in rows], [r.probability for r in rows]
