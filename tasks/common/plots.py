"""Figures the stages save: learning curves from history.csv, written atomically, headless."""

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display
import matplotlib.pyplot as plt

from tasks.common.atomic import atomic_path


def plot_history(
    history_csv: str | Path,
    out_png: Path,
    series: tuple[str, str] = ("train_ppl", "val_ppl"),
    ylabel: str = "perplexity",
    yscale: str = "log",
) -> None:
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_lr) = figure(1, 2, figsize=(10, 4))
    for column, label in zip(series, ("train", "validation")):
        ax_loss.plot(epochs, [float(r[column]) for r in rows], label=label)
    ax_loss.set(xlabel="epoch", ylabel=ylabel, yscale=yscale, title=ylabel.capitalize())
    ax_loss.legend()
    ax_lr.plot(epochs, [float(r["lr"]) for r in rows])
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
    fig.tight_layout()
    save_figure(fig, out_png)


def figure(*args, **kwargs):
    """A new (figure, axes) pair on the headless backend; `save_figure` writes and closes it."""
    return plt.subplots(*args, **kwargs)


def save_figure(fig, out_png: Path) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
