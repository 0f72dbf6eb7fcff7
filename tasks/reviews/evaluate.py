"""Evaluating the review classifier: accuracy, macro and per-class precision / recall / F1 and
ROC-AUC (binary) on the test split beside a TF-IDF + logistic-regression baseline (over jieba
words, whatever the model's tokenization) fitted on the same train split; McNemar's test of the
two on the same test rows; expected calibration error and a reliability diagram; both models'
scores per review-length slice; confusion-matrix and PR-curve plots; the most confident mistakes
(mistakes.md); metrics.json."""

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn import metrics as skm

from tasks.common.atomic import write_json, write_text
from tasks.common.plots import plot_history
from tasks.common.tracking import log_evaluation
from tasks.reviews.batching import encode_texts
from tasks.reviews.calibration import expected_calibration_error, reliability_bins
from tasks.reviews.comparison import length_edges, length_slices, mcnemar_test
from tasks.reviews.plots import plot_confusion, plot_pr_curves, plot_reliability
from tasks.reviews.tfidf_baseline import fit_tfidf_baseline
from tasks.reviews.train import class_weights
from tasks.serving.review_predictor import ReviewModel, classify
from tasks.text.segment import segmenter
from tasks.training.device import set_threads
from tasks.training.run import stopped_by_of

log = logging.getLogger(__name__)


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, prefix: str) -> dict:
    """Accuracy, macro precision / recall / F1, and ROC-AUC (binary; one-vs-rest macro for more
    classes when every class occurs in y_true), via sklearn.metrics."""
    pred = probs.argmax(1)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(y_true, pred, average="macro", zero_division=0)
    out = {
        f"{prefix}_accuracy": skm.accuracy_score(y_true, pred),
        f"{prefix}_precision_macro": precision,
        f"{prefix}_recall_macro": recall,
        f"{prefix}_macro_f1": f1,
    }
    present = np.unique(y_true)
    if probs.shape[1] == 2 and len(present) == 2:
        out[f"{prefix}_roc_auc"] = skm.roc_auc_score(y_true, probs[:, 1])
    elif len(present) == probs.shape[1] > 2:
        out[f"{prefix}_roc_auc"] = skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro")
    return {k: float(v) for k, v in out.items()}


def review_eval_set_hash(texts: list[str], labels: list[int]) -> str:
    """Identifies the test split (texts and labels): macro-F1 is comparable only when it matches."""
    digest = hashlib.sha256()
    for text, label in zip(texts, labels):
        digest.update(f"{label}\x1f{text}\n".encode())
    return digest.hexdigest()[:16]


def confident_mistakes(texts: list[str], y_true: np.ndarray, probs: np.ndarray, classes: list, n: int) -> str:
    """Markdown table of the test reviews the model got wrong with the highest confidence."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:n]
    lines = [
        f"# Most confident mistakes ({len(wrong)} of {int((pred != y_true).sum())} wrong, test split)\n",
        "| probability | predicted | true | review |",
        "| --- | --- | --- | --- |",
    ]
    for i in wrong:
        text = texts[i].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {probs[i, pred[i]]:.3f} | {classes[pred[i]]} | {classes[y_true[i]]} | {text[:200]} |")
    return "\n".join(lines) + "\n"


def reviews_by_split(path: str) -> tuple[dict, dict, dict]:
    """The split table as tokens, labels and texts (as written) per split."""
    table = pq.read_table(path, columns=["text", "tokens", "label", "split"]).to_pydict()
    rows = {s: [i for i, x in enumerate(table["split"]) if x == s] for s in ("train", "val", "test")}
    tokens = {s: [table["tokens"][i] for i in idx] for s, idx in rows.items()}
    labels = {s: np.array([table["label"][i] for i in idx], dtype=np.int64) for s, idx in rows.items()}
    return tokens, labels, {s: [table["text"][i] for i in idx] for s, idx in rows.items()}


def baseline_tokens(tp, tokens: dict, texts: dict) -> dict:
    """The baseline's tokens: jieba words, its strongest classic form, also when the model reads
    characters (the split's tokens are reused when they are words already)."""
    tk = tp.tokenize
    if tk.level == "word":
        return tokens
    cut = segmenter("word", tk.hmm, tk.user_dict, tk.backend)
    return {s: [[t for t in cut(text) if not t.isspace()] for text in texts[s]] for s in texts}


def baseline_probs(tp, tokens: dict, labels: dict, num_classes: int) -> tuple[np.ndarray, dict]:
    """TF-IDF + logistic regression fitted on train (C chosen on val, classes weighted as the
    model's loss was): its test probabilities (N, C) and the choice it made. `tokens`: jieba words."""
    cfg, train = tp.evaluate, tp.train
    weighted = (
        class_weights(
            np.bincount(labels["train"], minlength=num_classes), num_classes, train.class_weights, train.imbalance_ratio
        )
        is not None
    )
    baseline, chosen = fit_tfidf_baseline(
        tokens["train"],
        labels["train"],
        cfg.baseline_ngram_max,
        cfg.baseline_min_df,
        cfg.baseline_C,
        "balanced" if weighted else None,
        train.seed,
        tokens["val"],
        labels["val"],
    )
    probs = np.zeros((len(tokens["test"]), num_classes), dtype=np.float32)  # as the model's (classify)
    probs[:, baseline.classes_] = baseline.predict_proba(tokens["test"])  # a class absent from train stays 0
    return probs, chosen


def per_class(y_true: np.ndarray, probs: np.ndarray, classes: list) -> dict:
    """Precision, recall, F1 and support of each class (sklearn), by class name."""
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, probs.argmax(1), labels=range(len(classes)), zero_division=0
    )
    return {
        str(c): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for c, p, r, f, n in zip(classes, precision, recall, f1, support)
    }


def comparison_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    base_probs: np.ndarray,
    classes: list,
    chosen: dict,
    ngram_max: int,
    test_texts: list[str],
    train_texts: list[str] | None = None,
) -> dict:
    """metrics.json: the model's and the baseline's scores on the same test rows, side by side;
    McNemar's test between them; calibration; and (given the train texts, whose length terciles
    define the slices) both models' scores by review length."""
    metrics = {
        **classification_metrics(y_true, probs, "test"),
        **classification_metrics(y_true, base_probs, "baseline"),
        "test_ece": expected_calibration_error(y_true, probs),
        "baseline_ece": expected_calibration_error(y_true, base_probs),
    }
    pred, base_pred = probs.argmax(1), base_probs.argmax(1)
    mcnemar = mcnemar_test(y_true, pred, base_pred)
    metrics["mcnemar_p_value"] = mcnemar["p_value"]
    metrics["mcnemar"] = mcnemar
    metrics["per_class"] = per_class(y_true, probs, classes)
    metrics["baseline_per_class"] = per_class(y_true, base_probs, classes)
    if train_texts:
        edges = length_edges(np.array([len(t) for t in train_texts]))
        lengths = np.array([len(t) for t in test_texts])
        metrics["length_slices"] = length_slices(lengths, edges, y_true, {"test": pred, "baseline": base_pred})
    everyone = range(len(classes))
    metrics.update(
        {
            "test_reviews": len(test_texts),
            "classes": [str(c) for c in classes],
            "confusion_matrix": skm.confusion_matrix(y_true, probs.argmax(1), labels=everyone).tolist(),
            "baseline_confusion_matrix": skm.confusion_matrix(y_true, base_probs.argmax(1), labels=everyone).tolist(),
            "baseline": f"tfidf(1-{ngram_max} gram jieba words)+logreg(C={chosen['C']:g})",
            "baseline_C": chosen["C"],
            "baseline_val_macro_f1_by_C": {f"{c:g}": f for c, f in chosen["val_macro_f1_by_C"].items()},
            "beats_baseline": bool(
                metrics["test_accuracy"] >= metrics["baseline_accuracy"]
                and metrics["test_macro_f1"] >= metrics["baseline_macro_f1"]
            ),
            "eval_set_hash": review_eval_set_hash(test_texts, y_true.tolist()),
        }
    )
    return metrics


REPORT_FILES = (
    "metrics.json",
    "mistakes.md",
    "confusion_matrix.png",
    "pr_curve.png",
    "reliability.png",
    "reliability.json",
    "learning_curves.png",
)


def evaluate(params, tp, task: str) -> dict:
    """The evaluate stage of this task: metrics.json, plots and mistakes.md, logged to the run."""
    cfg = tp.evaluate
    set_threads(tp.train.num_threads)
    reviews = ReviewModel(Path(tp.train.output_dir) / "model.pt")
    tokens, labels, texts = reviews_by_split(tp.split.output)
    test_texts, y_test, names = texts["test"], labels["test"], [str(c) for c in reviews.classes]
    test_ids = encode_texts(tokens["test"], reviews.vocab, reviews.model.max_len)
    probs = classify(reviews.model, test_ids, reviews.device)  # (N, C)
    base_probs, chosen = baseline_probs(tp, baseline_tokens(tp, tokens, texts), labels, len(names))
    metrics = comparison_metrics(
        y_test, probs, base_probs, reviews.classes, chosen, cfg.baseline_ngram_max, test_texts, texts["train"]
    )
    lm_history = reviews.language_model_history
    if lm_history:  # init: pretrained: the review language model's own quality, before the classifier
        metrics["lm_val_ppl"] = min(math.exp(r["val_loss"]) for r in lm_history)
    # what ended training (epochs | early_stopping | max_minutes), so a budget-cut run is not read as converged
    metrics["stopped_by"] = stopped_by_of(Path(tp.train.output_dir) / "model.pt")

    out = Path(cfg.output_dir)
    write_json(metrics, cfg.metrics)
    plot_confusion(
        np.array(metrics["confusion_matrix"]), names, out / "confusion_matrix.png", "Confusion matrix (test)"
    )
    plot_pr_curves(y_test, {"model": probs, "tf-idf": base_probs}, names, out / "pr_curve.png")
    bins = {"model": reliability_bins(y_test, probs), "tf-idf": reliability_bins(y_test, base_probs)}
    write_json([{"model": m, **b} for m, rows in bins.items() for b in rows], out / "reliability.json")  # DVC plot
    plot_reliability(bins, {"model": metrics["test_ece"], "tf-idf": metrics["baseline_ece"]}, out / "reliability.png")
    write_text(confident_mistakes(test_texts, y_test, probs, names, cfg.mistakes), out / "mistakes.md")
    plot_history(tp.train.history, out / "learning_curves.png", ("train_loss", "val_loss"), "loss", "linear")
    log_evaluation(params, task, tp, metrics, out, REPORT_FILES)
    log.info(
        "test accuracy %.4f macro-F1 %.4f vs TF-IDF baseline accuracy %.4f macro-F1 %.4f (%d test reviews; "
        "McNemar p %.3g; ECE %.3f vs %.3f)",
        metrics["test_accuracy"],
        metrics["test_macro_f1"],
        metrics["baseline_accuracy"],
        metrics["baseline_macro_f1"],
        len(test_texts),
        metrics["mcnemar_p_value"],
        metrics["test_ece"],
        metrics["baseline_ece"],
    )
    return metrics
