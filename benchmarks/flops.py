"""Analytic training FLOPs of the models, and the float32 matmul rate to compare them with.

Only matrix multiplies are counted (2 FLOPs per multiply-add): embedding lookups, biases,
activations and the gate arithmetic are a few per cent at these sizes. Training ≈ 3 × forward (the
backward pass needs about twice the forward's multiplies). Achieved FLOP/s = tokens/s × training
FLOPs per token; divided by `matmul_flops_per_s()` measured in the same process (same threads) it
says how much of this CPU's dense-math speed the training loop uses.
"""

import time

import torch

GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # gate blocks in W_ih / W_hh
TRAIN_FACTOR = 3


def rnn_flops(cell: str, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False) -> int:
    """Forward FLOPs per token (per time step of one sequence) of an nn.RNN/GRU/LSTM stack:
    per layer and direction 2 · (in + hidden) · gates · hidden (W_ih x and W_hh h)."""
    dirs = 2 if bidirectional else 1
    total, layer_in = 0, input_size
    for _ in range(num_layers):
        total += dirs * 2 * (layer_in + hidden_size) * GATES[cell] * hidden_size
        layer_in = hidden_size * dirs
    return total


def adaptive_flops(
    hidden_size: int,
    vocab_size: int,
    cutoffs: list[int],
    div_value: float = 4.0,
    tail_fractions: list[float] | None = None,
) -> float:
    """Forward FLOPs per token of nn.AdaptiveLogSoftmaxWithLoss: the head (shortlist + one logit
    per cluster) for every token, tail cluster i (a projection to hidden / div^(i+1), then its
    words) only for the fraction `tail_fractions[i]` of tokens whose target is in it (training and
    perplexity). Without fractions every tail counts for every token (`log_prob`, generation)."""
    bounds = list(cutoffs) + [vocab_size]
    n_tails = len(bounds) - 1
    fractions = tail_fractions if tail_fractions is not None else [1.0] * n_tails
    flops = 2 * hidden_size * (bounds[0] + n_tails)
    for i in range(n_tails):
        proj = int(hidden_size // (div_value ** (i + 1)))
        flops += fractions[i] * (2 * hidden_size * proj + 2 * proj * (bounds[i + 1] - bounds[i]))
    return flops


def tail_fractions(targets: torch.Tensor, cutoffs: list[int], vocab_size: int) -> list[float]:
    """Fraction of target ids falling in each adaptive tail cluster [cutoff_i, cutoff_i+1)."""
    bounds = list(cutoffs) + [vocab_size]
    n = max(targets.numel(), 1)
    return [float(((targets >= lo) & (targets < hi)).sum()) / n for lo, hi in zip(bounds, bounds[1:])]


def lm_forward_flops(model_args: dict, fractions: list[float] | None = None) -> float:
    """Forward FLOPs per token of RNNLanguageModel built from `model_args` (a checkpoint's). Its
    layers are single-layer modules of sizes embedding → hidden → ... → top, where the top layer
    outputs embedding_size when the weights are tied (AWD-LSTM), so inner and top widths differ;
    the output layer reads the top width. The dropouts cost no matmul."""
    hidden, vocab = model_args["hidden_size"], model_args["vocab_size"]
    embedding = model_args.get("embedding_size") or hidden
    num_layers, cell = model_args.get("num_layers", 1), model_args.get("cell", "lstm")
    top = embedding if model_args.get("tie_weights") else hidden
    sizes = [embedding] + [hidden] * (num_layers - 1) + [top]
    flops = sum(rnn_flops(cell, sizes[i], sizes[i + 1]) for i in range(num_layers))
    if model_args.get("output", "softmax") == "adaptive":
        return flops + adaptive_flops(top, vocab, model_args["adaptive_cutoffs"], tail_fractions=fractions)
    return flops + 2 * top * vocab


def classifier_forward_flops(model_args: dict) -> float:
    """Forward FLOPs per token of RNNClassifier: the (bi)RNN and, with attention pooling, its
    projection and score; the per-review output layer is left out (one small matmul per review)."""
    dirs = 2 if model_args.get("bidirectional", True) else 1
    out = model_args["hidden_size"] * dirs
    flops = rnn_flops(
        model_args.get("cell", "gru"),
        model_args["embedding_size"],
        model_args["hidden_size"],
        model_args.get("num_layers", 1),
        dirs == 2,
    )
    if model_args.get("pooling") == "attention":
        flops += 2 * out * out + 2 * out + 2 * out  # proj, score, weighted sum
    return flops


def training_flops(forward_flops: float) -> float:
    return TRAIN_FACTOR * forward_flops


def matmul_flops_per_s(n: int = 1024, reps: int = 10, repeats: int = 3) -> float:
    """Float32 `torch.mm` FLOP/s on n×n matrices with torch's current thread setting: the best of
    `repeats` timings of `reps` products (the best, since a shared machine only ever slows it)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: allocations, thread pool start
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 * reps / best
