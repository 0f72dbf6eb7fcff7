"""Evaluating the review classifier: accuracy, macro and per-class precision / recall / F1 and
ROC-AUC (binary) on the test split beside a TF-IDF + logistic-regression baseline (over jieba
words, whatever the model's tokenization) fitted on the same train split; McNemar's test of the
two on the same test rows; expected calibration error and a reliability diagram; both models'
scores per review-length slice; confusion-matrix and PR-curve plots; the most confident mistakes
(mistakes.md); metrics.json."""

import hashlib
import itertools
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn import metrics as skm

from tasks.common.atomic import write_json, write_text
from tasks.common.errors import PipelineError
from tasks.common.plots import plot_history
from tasks.common.tracking import log_evaluation
from tasks.reviews.calibration import expected_calibration_error, reliability_bins
from tasks.reviews.comparison import length_edges, length_slices, mcnemar_test
from tasks.reviews.plots import plot_confusion, plot_pr_curves, plot_reliability
from tasks.reviews.review_stream import SplitReader
from tasks.reviews.tfidf_baseline import fit_tfidf_baseline
from tasks.reviews.train import class_weights
from tasks.serving.review_predictor import ReviewModel, classify
from tasks.split import read_batches
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


def hash_eval_set(digest, texts: Iterable[str], labels: Iterable[int]) -> None:
    """Add reviews to the hash that identifies the test split (texts and labels, in order):
    macro-F1 is comparable only when it matches."""
    for text, label in zip(texts, labels):
        digest.update(f"{label}\x1f{text}\n".encode())


@dataclass
class TestScores:
    """The model on the test split, read a record batch at a time: what evaluate keeps of it."""

    probs: np.ndarray  # (N, C) the model's class probabilities
    labels: np.ndarray  # (N,)
    lengths: np.ndarray  # (N,) characters of each review as written (the length slices)
    eval_set_hash: str


def split_rows(path, split: str, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The split file's rows of one split, `columns` only, a record batch at a time in file order
    (a batch with none of them is left out)."""
    for batch in read_batches(path, [*columns, "split"], batch_rows):
        batch = batch.filter(pc.equal(batch.column("split"), split)).select(columns)
        if batch.num_rows:
            yield batch


def score_test_split(path, reviews: ReviewModel, batch_rows: int) -> TestScores:
    """`classify` over the test reviews, batch by batch, with their labels, lengths and hash."""
    reader = SplitReader(path, reviews.vocab, reviews.model.max_len, batch_rows)
    digest, probs, labels, lengths = hashlib.sha256(), [], [], []
    for batch in split_rows(path, "test", ["text", "tokens", "label"], batch_rows):
        y = batch.column("label").to_numpy(zero_copy_only=False).astype(np.int64)
        hash_eval_set(digest, batch.column("text").to_pylist(), y.tolist())
        probs.append(classify(reviews.model, reader.encode(batch.column("tokens")), reviews.device))
        labels.append(y)
        lengths.append(pc.utf8_length(batch.column("text")).to_numpy(zero_copy_only=False))
    if not labels:
        raise PipelineError(f"{path}: no test reviews; rerun split with more reviews")
    return TestScores(np.concatenate(probs), np.concatenate(labels), np.concatenate(lengths), digest.hexdigest()[:16])


def text_lengths(path, split: str, batch_rows: int) -> np.ndarray:
    """(N,) characters of each review of the split as written."""
    parts = [
        pc.utf8_length(b.column("text")).to_numpy(zero_copy_only=False)
        for b in split_rows(path, split, ["text"], batch_rows)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def split_labels(path, split: str, batch_rows: int) -> np.ndarray:
    """(N,) labels of the split's reviews in file order."""
    parts = [b.column("label").to_numpy(zero_copy_only=False) for b in split_rows(path, split, ["label"], batch_rows)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def texts_at(path, split: str, rows: np.ndarray, batch_rows: int) -> dict[int, str]:
    """The texts of the split's reviews at positions `rows` (mistakes.md lists a few of them)."""
    wanted, out, seen = set(rows.tolist()), {}, 0
    for batch in split_rows(path, split, ["text"], batch_rows):
        for i, text in enumerate(batch.column("text").to_pylist(), start=seen):
            if i in wanted:
                out[i] = text
        seen += batch.num_rows
    return out


def confident_mistake_rows(y_true: np.ndarray, probs: np.ndarray, n: int) -> np.ndarray:
    """The positions of the `n` test reviews the model got wrong with the highest confidence."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:n]


def confident_mistakes(texts: dict[int, str], y_true: np.ndarray, probs: np.ndarray, classes: list, n: int) -> str:
    """Markdown table of the test reviews the model got wrong with the highest confidence; `texts`
    holds at least those reviews' texts by position."""
    pred = probs.argmax(1)
    wrong = confident_mistake_rows(y_true, probs, n)
    lines = [
        f"# Most confident mistakes ({len(wrong)} of {int((pred != y_true).sum())} wrong, test split)\n",
        "| probability | predicted | true | review |",
        "| --- | --- | --- | --- |",
    ]
    for i in wrong:
        text = texts[i].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {probs[i, pred[i]]:.3f} | {classes[pred[i]]} | {classes[y_true[i]]} | {text[:200]} |")
    return "\n".join(lines) + "\n"


def baseline_batches(tp, split: str, keep: np.ndarray | None = None) -> Iterator[list[list[str]]]:
    """The baseline's documents of one split, a record batch at a time: jieba words, its strongest
    classic form, also when the model reads characters (the split's tokens are reused when they are
    words already). `keep`: a mask over the split's reviews, to yield only those (None: all)."""
    tk, path, rows = tp.tokenize, tp.split.output, tp.split.batch_rows
    column = "tokens" if tk.level == "word" else "text"
    cut = segmenter("word", tk.hmm, tk.user_dict, tk.backend) if tk.level != "word" else None
    seen = 0
    for batch in split_rows(path, split, [column], rows):
        values = batch.column(column)
        if keep is not None:
            values = values.filter(pa.array(keep[seen : seen + len(values)]))
        seen += batch.num_rows
        values = values.to_pylist()
        yield values if cut is None else [[t for t in cut(text) if not t.isspace()] for text in values]


def baseline_documents(tp, split: str, keep: np.ndarray | None = None) -> Iterator[list[str]]:
    """`baseline_batches`, one document at a time."""
    return itertools.chain.from_iterable(baseline_batches(tp, split, keep))


def baseline_sample(n: int, cap: int | None, seed: int) -> np.ndarray | None:
    """Which of the `n` train reviews the baseline fits on: a seeded uniform sample of `cap` when
    there are more (its sparse features grow with the reviews), else None (all of them)."""
    if cap is None or n <= cap:
        return None
    keep = np.zeros(n, dtype=bool)
    keep[np.random.default_rng(seed).choice(n, cap, replace=False)] = True
    return keep


def baseline_probs(tp, labels: dict, num_classes: int) -> tuple[np.ndarray, dict]:
    """TF-IDF + logistic regression fitted on train (C chosen on val, classes weighted as the
    model's loss was): its test probabilities (N, C) and the choice it made. The documents are
    streamed from the split file; what it holds is their sparse TF-IDF features."""
    cfg, train = tp.evaluate, tp.train
    train_counts = np.bincount(labels["train"], minlength=num_classes)
    weighted = class_weights(train_counts, num_classes, train.class_weights, train.imbalance_ratio) is not None
    keep = baseline_sample(len(labels["train"]), cfg.baseline_max_train, train.seed)
    train_y = labels["train"] if keep is None else labels["train"][keep]
    baseline, chosen = fit_tfidf_baseline(
        baseline_documents(tp, "train", keep),
        train_y,
        cfg.baseline_ngram_max,
        cfg.baseline_min_df,
        cfg.baseline_C,
        "balanced" if weighted else None,
        train.seed,
        baseline_documents(tp, "val"),
        labels["val"],
    )
    probs = np.zeros((len(labels["test"]), num_classes), dtype=np.float32)  # as the model's (classify)
    start = 0
    for docs in baseline_batches(tp, "test"):  # the features of one batch at a time
        probs[start : start + len(docs), baseline.classes_] = baseline.predict_proba(docs)  # an absent class stays 0
        start += len(docs)
    return probs, {**chosen, "train_reviews": len(train_y)}


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
    test: TestScores, base_probs: np.ndarray, classes: list, chosen: dict, ngram_max: int, train_lengths: np.ndarray
) -> dict:
    """metrics.json: the model's and the baseline's scores on the same test rows, side by side;
    McNemar's test between them; calibration; and (the train reviews' length terciles defining the
    slices) both models' scores by review length."""
    y_true, probs = test.labels, test.probs
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
    if len(train_lengths):
        edges = length_edges(train_lengths)
        metrics["length_slices"] = length_slices(test.lengths, edges, y_true, {"test": pred, "baseline": base_pred})
    everyone = range(len(classes))
    fitted, train_reviews = chosen["train_reviews"], len(train_lengths)
    sample = f" on {fitted:,} of {train_reviews:,} train reviews" if fitted < train_reviews else ""
    metrics.update(
        {
            "test_reviews": len(y_true),
            "classes": [str(c) for c in classes],
            "confusion_matrix": skm.confusion_matrix(y_true, probs.argmax(1), labels=everyone).tolist(),
            "baseline_confusion_matrix": skm.confusion_matrix(y_true, base_probs.argmax(1), labels=everyone).tolist(),
            "baseline": f"tfidf(1-{ngram_max} gram jieba words)+logreg(C={chosen['C']:g})" + sample,
            "baseline_train_reviews": chosen["train_reviews"],
            "baseline_C": chosen["C"],
            "baseline_val_macro_f1_by_C": {f"{c:g}": f for c, f in chosen["val_macro_f1_by_C"].items()},
            "beats_baseline": bool(
                metrics["test_accuracy"] >= metrics["baseline_accuracy"]
                and metrics["test_macro_f1"] >= metrics["baseline_macro_f1"]
            ),
            "eval_set_hash": test.eval_set_hash,
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
    path, rows, names = tp.split.output, tp.split.batch_rows, [str(c) for c in reviews.classes]
    test = score_test_split(path, reviews, rows)
    y_test, probs = test.labels, test.probs  # (N,), (N, C)
    labels = {"train": split_labels(path, "train", rows), "val": split_labels(path, "val", rows), "test": y_test}
    base_probs, chosen = baseline_probs(tp, labels, len(names))
    train_lengths = text_lengths(path, "train", rows)
    metrics = comparison_metrics(test, base_probs, reviews.classes, chosen, cfg.baseline_ngram_max, train_lengths)
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
    mistaken = texts_at(path, "test", confident_mistake_rows(y_test, probs, cfg.mistakes), rows)
    write_text(confident_mistakes(mistaken, y_test, probs, names, cfg.mistakes), out / "mistakes.md")
    plot_history(tp.train.history, out / "learning_curves.png", ("train_loss", "val_loss"), "loss", "linear")
    log_evaluation(params, task, tp, metrics, out, REPORT_FILES)
    log.info(
        "test accuracy %.4f macro-F1 %.4f vs TF-IDF baseline accuracy %.4f macro-F1 %.4f (%d test reviews; "
        "McNemar p %.3g; ECE %.3f vs %.3f)",
        metrics["test_accuracy"],
        metrics["test_macro_f1"],
        metrics["baseline_accuracy"],
        metrics["baseline_macro_f1"],
        len(y_test),
        metrics["mcnemar_p_value"],
        metrics["test_ece"],
        metrics["baseline_ece"],
    )
    return metrics
