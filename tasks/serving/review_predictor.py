"""The review predictor: a loaded classifier checkpoint with its preprocessing, raw texts in,
labels and probabilities out. Used by evaluate, `tasks.predict` and the served pyfunc; it imports
no training code (and so no scikit-learn)."""

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tasks.common.errors import PipelineError
from tasks.reviews.batching import bucket_batches, encode_texts, pad_batch
from tasks.reviews.model import RNNClassifier
from tasks.text.review_rules import clean_review, review_rules
from tasks.text.segment import segment
from tasks.text.vocab import Vocab


@torch.no_grad()
def classify(model: nn.Module, seqs: list[list[int]], device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, C) for id sequences, in input order (batched by length for speed)."""
    model.eval()
    probs = np.zeros((len(seqs), model.head.out_features), dtype=np.float32)
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
        self.model = RNNClassifier(**ckpt["model_args"]).to(device).eval()
        self.model.load_state_dict(ckpt["state_dict"])
        self.vocab, self.tokenizer, self.classes = Vocab(ckpt["itos"]), ckpt["tokenizer"], ckpt["classes"]
        self.rules = review_rules(argparse.Namespace(**ckpt["clean"]))
        self.device = torch.device(device)

    def tokens(self, text: str) -> list[str]:
        """Raw text → the tokens training saw (same cleaning rules, same segmentation)."""
        cleaned = clean_review("" if text is None else str(text), self.rules)
        return segment(cleaned, self.tokenizer["level"], self.tokenizer["hmm"], self.tokenizer.get("user_dict"))

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(N, C) class probabilities. Empty or unknown text becomes [<unk>]: an answer, not an error."""
        seqs = encode_texts([self.tokens(t) for t in texts], self.vocab, self.model.max_len)
        return classify(self.model, seqs, self.device)

    def predict(self, texts: list[str]) -> tuple[list, list[float]]:
        probs = self.probabilities(texts)
        best = probs.argmax(1)
        return [self.classes[i] for i in best], [float(p) for p in probs[np.arange(len(texts)), best]]
