"""The review plots: confusion matrix, precision-recall curves and the reliability diagram, model
beside baseline."""

from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from tasks.common.plots import figure, save_figure


def plot_confusion(cm: np.ndarray, classes: list, out_png: Path, title: str) -> None:
    fig, ax = figure(figsize=(1.2 * len(classes) + 3, 1.2 * len(classes) + 2.5))
    ax.imshow(cm, cmap="Blues")
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    for i, j in np.ndindex(cm.shape):
        ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.tight_layout()
    save_figure(fig, out_png)


def plot_pr_curves(y_true: np.ndarray, curves: dict[str, np.ndarray], classes: list, out_png: Path) -> None:
    """Precision-recall of the positive class (binary) or of each class one-vs-rest, model vs baseline."""
    fig, ax = figure(figsize=(6, 5))
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


def plot_reliability(bins: dict[str, list[dict]], ece: dict[str, float], out_png: Path) -> None:
    """Accuracy against confidence per bin (tasks/reviews/calibration.py), one line per model; the
    diagonal is perfect calibration, points below it are overconfident."""
    fig, ax = figure(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for name, rows in bins.items():
        ax.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            marker="o",
            label=f"{name} (ECE {ece[name]:.3f})",
        )
    ax.set(
        xlabel="confidence in the predicted label",
        ylabel="accuracy",
        title="Reliability (test)",
        xlim=(0.0, 1.0),
        ylim=(0.0, 1.02),
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_png)
