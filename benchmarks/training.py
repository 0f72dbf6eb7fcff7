"""Training throughput and time to quality for the lyrics language model.

The reference loop is the tutorial's own: word-level, embedding 128 → nn.RNN(128) → linear,
batch size 1, windows of 32 tokens, Adam, one optimizer step per window.
"""

import math
import time

import torch
from torch import nn

from benchmarks import flops
from benchmarks.report import Measure
from tasks.lyrics.batching import batchify, lm_stream
from tasks.lyrics.kneser_ney import KneserNeyLM
from tasks.lyrics.model import RNNLanguageModel
from tasks.lyrics.train import train_language_model

TUTORIAL = {
    "embedding_size": 128,
    "hidden_size": 128,
    "num_layers": 1,
    "cell": "rnn",
    "dropout": 0.0,
    "tie_weights": False,
}


class TutorialRNN(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 128)
        self.rnn = nn.RNN(128, 128)
        self.fc = nn.Linear(128, vocab_size)

    def forward(self, x, h=None):
        out, h = self.rnn(self.embedding(x), h)  # (32, 1, 128)
        return self.fc(out), h  # (32, 1, V)


def tutorial_tokens_per_s(stream: torch.Tensor, vocab_size: int, seconds: float) -> float:
    """The tutorial's loop, run for about `seconds`: windows of 32 in order, batch size 1."""
    torch.manual_seed(0)
    model, loss_fn = TutorialRNN(vocab_size), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tokens, h, t0 = 0, None, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in range(0, stream.numel() - 33, 32):
            x = stream[i : i + 32].unsqueeze(1)  # (32, 1)
            y = stream[i + 1 : i + 33]
            logits, h = model(x, None if h is None else h.detach())
            loss = loss_fn(logits.squeeze(1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tokens += 32
            if time.perf_counter() - t0 >= seconds:
                break
    return tokens / (time.perf_counter() - t0)


def project_tokens_per_s(model_args: dict, cfg, stream: torch.Tensor, seconds: float) -> tuple[float, RNNLanguageModel]:
    """One epoch of the project's loop (tasks.train) over enough of `stream` for about `seconds`."""
    torch.manual_seed(0)
    model = RNNLanguageModel(**model_args)
    one = cfg.model_copy(update={"epochs": 1, "max_minutes": 60})
    probe = batchify(stream[: one.batch_size * one.bptt * 3 + 1], one.batch_size)
    t0 = time.perf_counter()
    train_language_model(model, probe, probe[:2], one, torch.device("cpu"))
    per_window = (time.perf_counter() - t0) / 3
    windows = max(3, int(seconds / per_window))
    data = batchify(stream[: one.batch_size * one.bptt * windows + 1], one.batch_size)
    history = train_language_model(model, data, data[:2], one, torch.device("cpu"))
    return history[-1]["tokens_per_s"], model


class Reached(Exception):
    pass


def time_to_quality(
    model_args: dict, cfg, train_stream, val_stream, vocab_size: int, kn_order: int, budget_minutes: float
) -> tuple[float | None, float, float]:
    """Train the default model from scratch until its validation perplexity is below half the
    Kneser-Ney baseline's on the same validation tokens; returns (seconds or None, best val ppl, KN val ppl)."""
    kn_val = KneserNeyLM(kn_order).fit(train_stream.tolist(), vocab_size).perplexity(val_stream.tolist())
    torch.manual_seed(cfg.seed)
    model = RNNLanguageModel(**model_args)
    run_cfg = cfg.model_copy(update={"max_minutes": budget_minutes})
    best, t0 = math.inf, time.perf_counter()

    def on_epoch_end(row: dict) -> None:
        nonlocal best
        best = min(best, row["val_ppl"])
        if row["val_ppl"] < 0.5 * kn_val:
            raise Reached

    try:
        train_language_model(
            model,
            batchify(train_stream, cfg.batch_size),
            batchify(val_stream, min(cfg.batch_size, 8)),
            run_cfg,
            torch.device("cpu"),
            on_epoch_end,
        )
    except Reached:
        return time.perf_counter() - t0, best, kn_val
    return None, best, kn_val


CMD = "python -m benchmarks.bench --only training"


def speed_measures(lp, train_stream: torch.Tensor, V: int, seconds: float) -> list[Measure]:
    """Training tokens/s against the PyTorch tutorial's loop, and achieved FLOP/s against a matmul."""
    ref = tutorial_tokens_per_s(train_stream, V, seconds)
    same_size, _ = project_tokens_per_s({"vocab_size": V, **TUTORIAL}, lp.train, train_stream, seconds)
    default_args = {"vocab_size": V, **lp.model.model_dump()}
    default_tps, _ = project_tokens_per_s(default_args, lp.train, train_stream, seconds)
    peak, per_token = flops.matmul_flops_per_s(), flops.training_flops(flops.lm_forward_flops(default_args))
    achieved = default_tps * per_token
    shape = f"{lp.model.cell} {lp.model.num_layers}x{lp.model.hidden_size}, batch {lp.train.batch_size}"
    windows = f"batch {lp.train.batch_size}, bptt {lp.train.bptt}"
    tutorial = "tutorial loop (nn.RNN(128), batch 1, windows of 32)"
    flops_note = f"analytic training FLOPs ({per_token / 1e6:.2f} MFLOP/token) x measured tokens/s"
    return [
        Measure("train_tokens_per_s_tutorial_size", same_size, "tokens/s", tutorial, ref, CMD,
                note=f"project loop with the tutorial's model size (rnn 1x128, untied), {windows}"),
        Measure("train_tokens_per_s_default", default_tps, "tokens/s", "tutorial loop", ref, CMD,
                note=f"default model: {shape}, bptt {lp.train.bptt}, vocab {V}"),
        Measure("train_flops_fraction_of_matmul", achieved / 1e9, "GFLOP/s", "float32 matmul (torch.mm 1024x1024)",
                peak / 1e9, CMD, target="≥ 0.5 of matmul", met=achieved / peak >= 0.5,
                note=f"{flops_note}, {torch.get_num_threads()} threads"),
    ]  # fmt: skip


def measure(params, splits: dict, vocab, seconds: float = 20, budget_minutes: float = 3) -> list[Measure]:
    lp = params.lyrics
    train_stream, val_stream = lm_stream(splits["train"], vocab), lm_stream(splits["val"], vocab)  # (N,)
    V = len(vocab)
    default_args = {"vocab_size": V, **lp.model.model_dump()}
    ttq, best, kn_val = time_to_quality(
        default_args, lp.train, train_stream, val_stream, V, lp.evaluate.ngram_order, budget_minutes
    )
    reached = "" if ttq is not None else "; not reached within the budget"
    kn = f"Kneser-Ney (order {lp.evaluate.ngram_order}) val ppl {kn_val:.1f}"
    quality = Measure(
        "time_to_half_kneser_ney_val_ppl",
        ttq,
        "s",
        f"{budget_minutes:g}-minute budget",
        budget_minutes * 60,
        CMD,
        target=f"val ppl < 0.5 x Kneser-Ney within {budget_minutes:g} min",
        met=ttq is not None,
        note=f"{kn}; best LSTM val ppl {best:.1f} (ratio {best / kn_val:.2f}){reached}",
    )
    return [*speed_measures(lp, train_stream, V, seconds), quality]
