"""Stage `train`: the split → a trained RNN/GRU/LSTM language model (lyrics) or review classifier
(reviews), with one shared loop (tasks/training/loop.py).

Early stopping on a validation score (best weights restored), ReduceLROnPlateau or warmup+cosine,
gradient clipping, bf16 autocast on CUDA (language model), and an epoch checkpoint that a killed
run resumes from. Under `torchrun --nproc_per_node=N` it trains data-parallel
(tasks/training/distributed.py): each process reads its shard of the data, DistributedDataParallel
averages the gradients, and rank 0 alone logs and writes files.

    python -m tasks.train [--task lyrics|reviews] [--params params.yaml] [--set lyrics.model.cell=gru]
    torchrun --standalone --nproc_per_node=2 -m tasks.train [--task ...]
"""

import torch

from tasks.catalog import stage_module
from tasks.common.cli import stage_main
from tasks.common.params import task_section
from tasks.text.vocab import load_vocab
from tasks.training import distributed
from tasks.training.device import pick_device, set_threads


def run(params, extra_tags: dict[str, str] | None = None, task: str = "lyrics", on_epoch=None) -> dict:
    """Train on the split, save models/<task>/model.pt (self-describing) and the MLflow run id.
    Under torchrun: one data-parallel process per rank, outputs from rank 0. `on_epoch(row)`: called
    on rank 0 after every epoch with its history row (a sweep reports to Optuna and prunes there)."""
    tp = task_section(params, task)
    with distributed.session(pick_device(tp.train.device)) as device:
        set_threads(tp.train.num_threads)
        torch.manual_seed(tp.train.seed)
        vocab = load_vocab(tp.vocab.output)
        return stage_module(task, "train").train(params, tp, vocab, device, extra_tags, task, on_epoch)


if __name__ == "__main__":
    stage_main(run, __doc__)
