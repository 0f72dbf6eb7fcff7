"""Data-parallel training under `torchrun` (torch.distributed + DistributedDataParallel).

`torchrun --nproc_per_node=N -m tasks.train` starts N processes and tells each its rank through
environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); `session()` joins them into
one process group (gloo on CPU, nccl on CUDA). Without those variables (plain `python -m
tasks.train`) every helper here is a no-op for a single process, so the training code reads the
same either way. Rank 0 is the main process: it alone logs, writes files and talks to MLflow.
"""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def launched() -> bool:
    """True when started by torchrun (or another launcher setting WORLD_SIZE) with several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


@contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the block (when launched by it) and yield this process's
    device (cuda:LOCAL_RANK on GPUs). On a clean exit every rank waits for the others (rank 0 may
    still be writing outputs) before the group is destroyed; on an error the group is just torn
    down (torchrun then stops the other ranks)."""
    if not launched() or active():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)  # nccl and all_gather_object use the current device
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")  # env:// from torchrun
    if not is_main():
        logging.getLogger().setLevel(logging.WARNING)  # one log: rank 0's
    log.info("distributed: %d processes, backend %s", world_size(), dist.get_backend())
    try:
        yield device
        dist.barrier()
    finally:
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """DistributedDataParallel around `model` (already on `device`) when distributed, else `model`.
    The wrapper shares the module's parameters: train through it, save and evaluate the module."""
    if not active():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def shard_columns(data: torch.Tensor) -> torch.Tensor:
    """This rank's block of columns of a batchified (N, B) stream → (N, B / world): each column is
    still one contiguous slice of the text, so the hidden state carries across windows as before."""
    if not active():
        return data
    return data.tensor_split(world_size(), dim=1)[rank()].contiguous()


def shard_batches(batches: list) -> list:
    """This rank's share of a list of batches (the same list on every rank): every world-th batch,
    and the same count on every rank (the last len % world are dropped), so no rank waits in a
    gradient all-reduce that another never enters."""
    if not active():
        return batches
    per_rank = len(batches) // world_size()
    return batches[rank() :: world_size()][:per_rank]


def all_reduce_sum(*values: float) -> list[float]:
    """Sum numbers over all ranks (e.g. loss totals and token counts)."""
    if not active():
        return list(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather(obj):
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def from_main(obj):
    """Rank 0's `obj` on every rank: decisions (early stopping, LR schedule, time budget) are taken
    from one set of numbers, so all ranks stop in the same epoch."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
