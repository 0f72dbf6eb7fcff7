"""Device and precision: where training runs, bf16 autocast on CUDA, CPU threads."""

import torch

from tasks.common.errors import PipelineError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("params.yaml: train.device is cuda but no CUDA device is visible; set it to auto or cpu")
    return torch.device(name)


def autocast(device: torch.device):
    # bf16 needs no loss scaling, unlike fp16; on CPU autocast would only slow the RNN down.
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def set_threads(n: int) -> None:
    """Pin torch's intra-op CPU threads for this process (0 keeps torch's default, which follows
    OMP_NUM_THREADS or else uses every core): a small RNN gains little from threads, and on a busy
    machine they spin waiting for each other."""
    if n:
        torch.set_num_threads(n)
