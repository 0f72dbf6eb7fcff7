"""Classify reviews with a trained sentiment model: label and probability per text.

    python -m tasks.predict "房间很干净，服务也好" "送餐太慢了，菜都凉了"
    python -m tasks.predict - < reviews.txt                 # one review per line from stdin
    python -m tasks.predict --file reviews.txt --format jsonl --batch-size 512

--model takes any MLflow model URI (default models:/review-sentiment@champion, runs:/id/model) or a
local model.pt. Input lines are read and classified in batches, so files of any size stream
through; output keeps the input order, one line per input line. Raw text goes through the same
cleaning and jieba segmentation as training; texts longer than the model's max length are truncated,
and empty or non-Chinese texts still get an answer.
"""

import argparse
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from tasks.batching import encode_texts
from tasks.cli import run_cli
from tasks.errors import PipelineError
from tasks.models import RNNClassifier
from tasks.review_rules import clean_review, review_rules
from tasks.tokenize import segment
from tasks.vocab import Vocab

DEFAULT_MODEL = "models:/review-sentiment@champion"


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
        from tasks.train import classify

        seqs = encode_texts([self.tokens(t) for t in texts], self.vocab, self.model.max_len)
        return classify(self.model, seqs, self.device)

    def predict(self, texts: list[str]) -> tuple[list, list[float]]:
        probs = self.probabilities(texts)
        best = probs.argmax(1)
        return [self.classes[i] for i in best], [float(p) for p in probs[np.arange(len(texts)), best]]


def read_lines(source: str) -> Iterator[str]:
    """Lines of a file (or stdin for `-`), lazily, UTF-8, without their line breaks."""
    if source == "-":
        stream = sys.stdin
    else:
        path = Path(source)
        if not path.is_file():
            raise PipelineError(f"{path}: input file not found; pass a text file with one review per line, or - for stdin")
        stream = open(path, encoding="utf-8-sig", newline=None)
    no = 0
    try:
        for no, line in enumerate(stream, start=1):
            yield line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{source}: not UTF-8 near line {no + 1}; convert it, e.g. iconv -f GB18030 -t UTF-8") from exc
    finally:
        if stream is not sys.stdin:
            stream.close()


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def load_predictor(uri: str):
    """A callable texts → (labels, probabilities): a local model.pt directly, else an MLflow pyfunc."""
    if Path(uri).is_file():
        return ReviewModel(uri).predict
    import pandas as pd

    from tasks.pyfunc_models import load_pyfunc  # MLflow only when a URI needs it: slow to import

    pyfunc = load_pyfunc(uri, make_hint="make reviews")

    def predict(texts: list[str]):
        out = pyfunc.predict(pd.DataFrame({"text": texts}))
        return out["label"].tolist(), out["probability"].astype(float).tolist()

    return predict


def format_result(text: str, label, probability: float, fmt: str) -> str:
    if fmt == "jsonl":
        label = label.item() if hasattr(label, "item") else label
        return json.dumps({"text": text, "label": label, "probability": round(probability, 6)}, ensure_ascii=False)
    return f"{label}\t{probability:.4f}\t{text}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Classify reviews: label and probability per text.")
    parser.add_argument("texts", nargs="*", help="review texts; `-` reads one review per line from stdin")
    parser.add_argument("--file", "-f", help="read one review per line from this file (`-`: stdin)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"MLflow model URI or a model.pt path (default {DEFAULT_MODEL})")
    parser.add_argument("--format", choices=("text", "jsonl"), default="text",
                        help="text: label<TAB>probability<TAB>text; jsonl: one {text,label,probability} per line")
    parser.add_argument("--batch-size", type=int, default=256, help="reviews per batch when streaming (default 256)")
    args = parser.parse_args()
    if args.batch_size < 1:
        raise PipelineError("--batch-size must be at least 1")
    if args.file:
        texts: Iterable[str] = read_lines(args.file)
    elif args.texts == ["-"]:
        texts = read_lines("-")
    elif args.texts:
        texts = args.texts
    else:
        raise PipelineError('no input: pass texts (python -m tasks.predict "服务很好"), - for stdin, or --file PATH')
    predict = load_predictor(args.model)
    for batch in batched(texts, args.batch_size):
        labels, probs = predict(batch)
        print("\n".join(format_result(t, lab, p, args.format) for t, lab, p in zip(batch, labels, probs)), flush=True)


if __name__ == "__main__":
    run_cli(main)
