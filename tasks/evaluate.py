"""Stage `evaluate`: test perplexity and OOV rate of the trained model beside an interpolated
Kneser-Ney baseline fitted on the same train split and scored on the same test tokens; samples;
metrics.json and learning-curve plots. Logs everything to the pipeline's MLflow run.

    python -m tasks.evaluate [--params params.yaml]
"""

import csv
import hashlib
import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display
import matplotlib.pyplot as plt
import mlflow
import torch

from tasks import tracking
from tasks.atomic import atomic_path, write_json, write_text
from tasks.batching import lm_stream
from tasks.cli import stage_main
from tasks.generate import generate_text, load_checkpoint
from tasks.kneser_ney import KneserNeyLM
from tasks.train import estimate_loss
from tasks.vocab import Vocab, oov_rate, tokens_by_split

log = logging.getLogger(__name__)


def perplexity(model, stream: torch.Tensor, bptt: int) -> float:
    """exp(mean NLL) of stream[1:] given everything before it (batch of one column, state carried),
    so the targets are exactly the ones the n-gram baseline scores."""
    return math.exp(estimate_loss(model, stream.view(-1, 1), bptt, next(model.parameters()).device))  # (N, 1)


def eval_set_hash(test_tokens: list[list[str]], vocab: Vocab) -> str:
    """Identifies the test split and vocabulary: perplexities are comparable only when it matches."""
    digest = hashlib.sha256(vocab.hash.encode())
    for tokens in test_tokens:
        digest.update(("\x1f".join(tokens) + "\n").encode())
    return digest.hexdigest()[:16]


def plot_history(history_csv: str | Path, out_png: Path) -> None:
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [float(r["train_ppl"]) for r in rows], label="train")
    ax_loss.plot(epochs, [float(r["val_ppl"]) for r in rows], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="perplexity", yscale="log", title="Perplexity")
    ax_loss.legend()
    ax_lr.plot(epochs, [float(r["lr"]) for r in rows])
    ax_lr.set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def run(params) -> dict:
    lp, cfg = params.lyrics, params.lyrics.evaluate
    model, vocab, tokenizer = load_checkpoint(Path(lp.train.output_dir) / "model.pt")
    splits = tokens_by_split(lp.split.output)
    test_stream = lm_stream(splits["test"], vocab)                      # (N,)
    test_ppl = perplexity(model, test_stream, lp.train.bptt)
    kn = KneserNeyLM(cfg.ngram_order).fit(lm_stream(splits["train"], vocab).tolist(), len(vocab))
    kn_ppl = kn.perplexity(test_stream.tolist())
    metrics = {
        "test_perplexity": test_ppl,
        "kneser_ney_perplexity": kn_ppl,
        "ratio_to_kneser_ney": test_ppl / kn_ppl,
        "test_oov_rate": oov_rate(splits["test"], vocab),
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

    tracking.configure(params)
    with mlflow.start_run(run_id=tracking.load_run_id(lp.train.output_dir)):
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        mlflow.set_tag("eval_set_hash", metrics["eval_set_hash"])
        for name in ("metrics.json", "samples.md", "learning_curves.png"):
            mlflow.log_artifact(str(out / name), artifact_path="evaluation")
    log.info("test perplexity %.1f vs Kneser-Ney (order %d) %.1f: ratio %.2f; OOV %.1f%%", test_ppl, cfg.ngram_order,
             kn_ppl, metrics["ratio_to_kneser_ney"], 100 * metrics["test_oov_rate"])
    return metrics


if __name__ == "__main__":
    stage_main(run, __doc__)
