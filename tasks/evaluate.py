"""Stage `evaluate`, logged to the pipeline's MLflow run.

lyrics: test perplexity and OOV rate of the trained model beside an interpolated Kneser-Ney
baseline fitted on the same train split and scored on the same test tokens; samples; metrics.json
and learning-curve plots.
reviews: accuracy, macro precision / recall / F1 and ROC-AUC (binary) on the test split beside a
TF-IDF + logistic-regression baseline fitted on the same train split; confusion-matrix and PR-curve
plots; the most confident mistakes (mistakes.md); metrics.json.

    python -m tasks.evaluate [--task lyrics|reviews] [--params params.yaml]
"""

import csv
import hashlib
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pyarrow.parquet as pq
from sklearn import metrics as skm

from tasks import tracking
from tasks.atomic import atomic_path, write_json, write_text
from tasks.batching import encode_texts, lm_stream
from tasks.cli import stage_main
from tasks.generate import generate_text, load_checkpoint
from tasks.kneser_ney import KneserNeyLM, fit_unigram_cache
from tasks.kneser_ney import perplexities as kn_perplexities
from tasks.neural_cache import perplexities
from tasks.params import task_section
from tasks.predict import ReviewModel
from tasks.tfidf_baseline import fit_tfidf_baseline
from tasks.train import class_weights, classify, set_threads
from tasks.vocab import Vocab, oov_rate, tokens_by_split

log = logging.getLogger(__name__)


def seen_in(lines: list[list[str]], reference: list[list[str]]) -> float:
    """Fraction of `lines` that occur verbatim (same tokens) among `reference` lines."""
    known = {tuple(tokens) for tokens in reference}
    return sum(tuple(tokens) in known for tokens in lines) / max(len(lines), 1)


def eval_set_hash(test_tokens: list[list[str]], vocab: Vocab) -> str:
    """Identifies the test split and vocabulary: perplexities are comparable only when it matches."""
    digest = hashlib.sha256(vocab.hash.encode())
    for tokens in test_tokens:
        digest.update(("\x1f".join(tokens) + "\n").encode())
    return digest.hexdigest()[:16]


def plot_history(history_csv: str | Path, out_png: Path, series: tuple[str, str] = ("train_ppl", "val_ppl"),
                 ylabel: str = "perplexity", yscale: str = "log") -> None:
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 4))
    for column, label in zip(series, ("train", "validation")):
        ax_loss.plot(epochs, [float(r[column]) for r in rows], label=label)
    ax_loss.set(xlabel="epoch", ylabel=ylabel, yscale=yscale, title=ylabel.capitalize())
    ax_loss.legend()
    ax_lr.plot(epochs, [float(r["lr"]) for r in rows])
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
    fig.tight_layout()
    save_figure(fig, out_png)


def save_figure(fig, out_png: Path) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run(params, task: str = "lyrics") -> dict:
    if task == "reviews":
        return run_classifier(params, task)
    lp = task_section(params, task)
    cfg = lp.evaluate
    set_threads(lp.train.num_threads)
    model, vocab, tokenizer = load_checkpoint(Path(lp.train.output_dir) / "model.pt")
    splits = tokens_by_split(lp.split.output)
    test_stream, val_stream = (lm_stream(splits[s], vocab) for s in ("test", "val"))   # (N,)
    # The model scores the test text with its continuous cache when training fitted one (tasks/neural_cache.py).
    test_ppl_alone, test_ppl = perplexities(model, test_stream, model.cache)
    kn = KneserNeyLM(cfg.ngram_order).fit(lm_stream(splits["train"], vocab).tolist(), len(vocab))
    kn_ppl, kn_cache_ppl = kn_perplexities(kn, test_stream.tolist(), fit_unigram_cache(kn, val_stream.tolist()))
    metrics = {
        "test_perplexity": test_ppl,
        "kneser_ney_perplexity": kn_ppl,
        "ratio_to_kneser_ney": test_ppl / kn_ppl,
        # Both models without / with a cache of the recent text, so the share of the lead that the
        # cache makes (the test split repeats its own choruses) can be read off.
        "test_perplexity_without_cache": test_ppl_alone,
        "kneser_ney_cache_perplexity": kn_cache_ppl,
        "ratio_to_kneser_ney_cache": test_ppl / kn_cache_ppl,
        "cache_lambda": model.cache["lam"] if model.cache else 0.0,
        "test_oov_rate": oov_rate(splits["test"], vocab),
        # Lines the test split shares verbatim with train (repeated songs): memorisable, so they
        # favour the n-gram baseline; reported so the comparison can be read with that in mind.
        "test_lines_seen_in_train": seen_in(splits["test"], splits["train"]),
        "val_lines_seen_in_train": seen_in(splits["val"], splits["train"]),
        "test_tokens": int(test_stream.numel()),
        "eval_set_hash": eval_set_hash(splits["test"], vocab),
    }
    samples = [
        f"## {start}\n{generate_text(model, vocab, tokenizer, start, cfg.sample_length, temperature=cfg.temperature, top_k=cfg.top_k, seed=cfg.seed)}\n"
        for start in cfg.sample_starts
    ]
    out = Path(cfg.output_dir)
    write_json(metrics, cfg.metrics)
    write_text("\n".join(samples), out / "samples.md")
    plot_history(lp.train.history, out / "learning_curves.png")

    log_evaluation(params, task, lp, metrics, out, ("metrics.json", "samples.md", "learning_curves.png"))
    log.info("test perplexity %.1f vs Kneser-Ney (order %d) %.1f: ratio %.2f; OOV %.1f%%", test_ppl, cfg.ngram_order,
             kn_ppl, metrics["ratio_to_kneser_ney"], 100 * metrics["test_oov_rate"])
    log.info("without caches: LSTM %.1f, Kneser-Ney %.1f; both with a cache: LSTM %.1f, Kneser-Ney %.1f (ratio %.2f)",
             metrics["test_perplexity_without_cache"], kn_ppl, test_ppl, kn_cache_ppl, metrics["ratio_to_kneser_ney_cache"])
    return metrics


def log_evaluation(params, task: str, tp, metrics: dict, out: Path, files: tuple[str, ...]) -> None:
    tracking.configure(params, task)
    with mlflow.start_run(run_id=tracking.load_run_id(tp.train.output_dir)):
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.set_tag("eval_set_hash", metrics["eval_set_hash"])
        for name in files:
            mlflow.log_artifact(str(out / name), artifact_path="evaluation")


# --- reviews ------------------------------------------------------------------------------------

def classification_metrics(y_true: np.ndarray, probs: np.ndarray, prefix: str) -> dict:
    """Accuracy, macro precision / recall / F1, and ROC-AUC (binary; one-vs-rest macro for more
    classes when every class occurs in y_true), via sklearn.metrics."""
    pred = probs.argmax(1)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(y_true, pred, average="macro", zero_division=0)
    out = {f"{prefix}_accuracy": skm.accuracy_score(y_true, pred), f"{prefix}_precision_macro": precision,
           f"{prefix}_recall_macro": recall, f"{prefix}_macro_f1": f1}
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


def plot_confusion(cm: np.ndarray, classes: list, out_png: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 3, 1.2 * len(classes) + 2.5))
    ax.imshow(cm, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title=title)
    for i, j in np.ndindex(cm.shape):
        ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.tight_layout()
    save_figure(fig, out_png)


def plot_pr_curves(y_true: np.ndarray, curves: dict[str, np.ndarray], classes: list, out_png: Path) -> None:
    """Precision-recall of the positive class (binary) or of each class one-vs-rest, model vs baseline."""
    fig, ax = plt.subplots(figsize=(6, 5))
    targets = [1] if len(classes) == 2 else range(len(classes))
    for name, probs in curves.items():
        for c in targets:
            if (y_true == c).any():
                precision, recall, _ = skm.precision_recall_curve(y_true == c, probs[:, c])
                ap = skm.average_precision_score(y_true == c, probs[:, c])
                ax.plot(recall, precision, label=f"{name} class {classes[c]} (AP {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_png)


def confident_mistakes(texts: list[str], y_true: np.ndarray, probs: np.ndarray, classes: list, n: int) -> str:
    """Markdown table of the test reviews the model got wrong with the highest confidence."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:n]
    lines = [f"# Most confident mistakes ({len(wrong)} of {int((pred != y_true).sum())} wrong, test split)\n",
             "| probability | predicted | true | review |", "| --- | --- | --- | --- |"]
    for i in wrong:
        text = texts[i].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {probs[i, pred[i]]:.3f} | {classes[pred[i]]} | {classes[y_true[i]]} | {text[:200]} |")
    return "\n".join(lines) + "\n"


def run_classifier(params, task: str = "reviews") -> dict:
    tp = task_section(params, task)
    cfg = tp.evaluate
    set_threads(tp.train.num_threads)
    reviews = ReviewModel(Path(tp.train.output_dir) / "model.pt")
    table = pq.read_table(tp.split.output, columns=["text", "tokens", "label", "split"]).to_pydict()
    rows = {s: [i for i, x in enumerate(table["split"]) if x == s] for s in ("train", "val", "test")}
    tokens = {s: [table["tokens"][i] for i in idx] for s, idx in rows.items()}
    labels = {s: np.array([table["label"][i] for i in idx], dtype=np.int64) for s, idx in rows.items()}
    test_texts = [table["text"][i] for i in rows["test"]]
    classes = reviews.classes

    probs = classify(reviews.model, encode_texts(tokens["test"], reviews.vocab, reviews.model.max_len), reviews.device)
    weighted = class_weights(labels["train"], len(classes), tp.train.class_weights, tp.train.imbalance_ratio) is not None
    baseline, chosen = fit_tfidf_baseline(tokens["train"], labels["train"], cfg.baseline_ngram_max, cfg.baseline_min_df,
                                          cfg.baseline_C, "balanced" if weighted else None, tp.train.seed,
                                          tokens["val"], labels["val"])
    base_probs = np.zeros_like(probs)
    base_probs[:, baseline.classes_] = baseline.predict_proba(tokens["test"])  # a class absent from train stays 0
    metrics = {**classification_metrics(labels["test"], probs, "test"),
               **classification_metrics(labels["test"], base_probs, "baseline")}
    metrics.update({
        "test_reviews": len(test_texts),
        "classes": [str(c) for c in classes],
        "confusion_matrix": skm.confusion_matrix(labels["test"], probs.argmax(1), labels=range(len(classes))).tolist(),
        "baseline_confusion_matrix": skm.confusion_matrix(labels["test"], base_probs.argmax(1), labels=range(len(classes))).tolist(),
        "baseline": f"tfidf(1-{cfg.baseline_ngram_max} gram jieba words)+logreg(C={chosen['C']:g})",
        "baseline_C": chosen["C"],
        "baseline_val_macro_f1_by_C": {f"{c:g}": f for c, f in chosen["val_macro_f1_by_C"].items()},
        "beats_baseline": bool(metrics["test_accuracy"] >= metrics["baseline_accuracy"]
                               and metrics["test_macro_f1"] >= metrics["baseline_macro_f1"]),
        "eval_set_hash": review_eval_set_hash(test_texts, labels["test"].tolist()),
    })
    out = Path(cfg.output_dir)
    write_json(metrics, cfg.metrics)
    names = [str(c) for c in classes]
    plot_confusion(np.array(metrics["confusion_matrix"]), names, out / "confusion_matrix.png", "Confusion matrix (test)")
    plot_pr_curves(labels["test"], {"model": probs, "tf-idf": base_probs}, names, out / "pr_curve.png")
    write_text(confident_mistakes(test_texts, labels["test"], probs, names, cfg.mistakes), out / "mistakes.md")
    plot_history(tp.train.history, out / "learning_curves.png", ("train_loss", "val_loss"), "loss", "linear")
    log_evaluation(params, task, tp, metrics, out,
                   ("metrics.json", "mistakes.md", "confusion_matrix.png", "pr_curve.png", "learning_curves.png"))
    log.info("test accuracy %.4f macro-F1 %.4f vs TF-IDF baseline accuracy %.4f macro-F1 %.4f (%d test reviews)",
             metrics["test_accuracy"], metrics["test_macro_f1"], metrics["baseline_accuracy"],
             metrics["baseline_macro_f1"], len(test_texts))
    return metrics


if __name__ == "__main__":
    stage_main(run, __doc__)
