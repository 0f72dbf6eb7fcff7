"""CUDA throughput of the default models: float32 vs bf16 autocast, pinned host batches copied
with non_blocking=True, and the share of a measured bf16 matmul peak (MFU). Skipped without a GPU."""

import time

import torch
from torch import nn

from benchmarks import flops
from benchmarks.report import Measure
from tasks.lyrics.batching import batchify
from tasks.lyrics.model import RNNLanguageModel
from tasks.reviews.model import RNNClassifier


def _steps_per_s(model: nn.Module, batches: list[tuple], loss_of, bf16: bool, steps: int = 50) -> float:
    device = torch.device("cuda")
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i in range(steps + 5):  # 5 warm-up steps (cuDNN picks its kernels)
        if i == 5:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        batch = [b.to(device, non_blocking=True) for b in batches[i % len(batches)]]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_of(model, *batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - t0)


def bf16_matmul_flops_per_s(n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    torch.mm(a, b)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def lm_tokens_per_s(lp, vocab_size: int) -> tuple[float, float, float]:
    """The default language model's training tokens/s in float32 and bf16, and its bf16 MFU."""
    B, T = lp.train.batch_size, lp.train.bptt
    data = batchify(torch.randint(4, vocab_size, (B * T * 20 + 1,)), B)  # (N, B)
    batches = [(data[i : i + T].pin_memory(), data[i + 1 : i + 1 + T].pin_memory()) for i in range(0, 19 * T, T)]

    def lm_loss(model, x, y):
        loss, _ = model(x, None, y)  # mean NLL over (T, B)
        return loss

    model_args = {"vocab_size": vocab_size, **lp.model.model_dump()}
    lm = RNNLanguageModel(**model_args)
    fp32 = _steps_per_s(lm, batches, lm_loss, bf16=False) * B * T
    bf16 = _steps_per_s(lm, batches, lm_loss, bf16=True) * B * T
    mfu = bf16 * flops.training_flops(flops.lm_forward_flops(model_args)) / bf16_matmul_flops_per_s()
    return fp32, bf16, mfu


def classifier_tokens_per_s(rp, vocab_size: int) -> tuple[float, float]:
    """The default review classifier's training tokens/s in float32 and bf16 (full-length batches)."""
    L, B = rp.model.max_len, rp.train.batch_size
    pinned = [torch.randint(4, vocab_size, (B, L)), torch.full((B,), L), torch.randint(0, 2, (B,))]
    batches = [tuple(t.pin_memory() for t in pinned) for _ in range(10)]

    def cls_loss(model, x, lengths, y):
        return nn.functional.cross_entropy(model(x, lengths.cpu()).float(), y)  # packing wants CPU lengths

    clf = RNNClassifier(vocab_size=vocab_size, num_classes=2, **rp.model.model_dump())
    return (
        _steps_per_s(clf, batches, cls_loss, bf16=False) * B * L,
        _steps_per_s(clf, batches, cls_loss, bf16=True) * B * L,
    )


def measure(params, vocab_size: int) -> list[Measure]:
    cmd = "python -m benchmarks.bench --only gpu"
    if not torch.cuda.is_available():
        skipped = "skipped: no CUDA device on this machine"
        return [Measure("gpu_lm_bf16_vs_fp32", None, "tokens/s", "float32", None, cmd, note=skipped)]
    torch.backends.cudnn.benchmark = True
    fp32, bf16, mfu = lm_tokens_per_s(params.lyrics, vocab_size)
    c32, c16 = classifier_tokens_per_s(params.reviews, vocab_size)
    device = torch.cuda.get_device_name()
    lm_note = f"{device}; default LM; MFU {100 * mfu:.1f}% of a measured bf16 matmul peak"
    return [
        Measure("gpu_lm_bf16_vs_fp32", bf16, "tokens/s", "float32", fp32, cmd, note=lm_note),
        Measure(
            "gpu_classifier_bf16_vs_fp32",
            c16,
            "tokens/s",
            "float32",
            c32,
            cmd,
            note=f"{device}; default review classifier",
        ),
    ]
