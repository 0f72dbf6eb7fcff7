"""Stage `train`: the split → a trained RNN/GRU/LSTM language model (lyrics) or review classifier
(reviews), with one shared loop (`fit`).

Early stopping on a validation score (best weights restored), ReduceLROnPlateau or warmup+cosine,
gradient clipping, bf16 autocast on CUDA (language model), and an epoch checkpoint that a killed
run resumes from. Under `torchrun --nproc_per_node=N` it trains data-parallel (tasks/distributed.py):
each process reads its shard of the data, DistributedDataParallel averages the gradients, and rank 0
alone logs and writes files.
The classifier reads packed variable-length batches bucketed by length, weights classes when they
are imbalanced, and stops on validation macro-F1 by default.

    python -m tasks.train [--task lyrics|reviews] [--params params.yaml] [--set lyrics.model.cell=gru]
    torchrun --standalone --nproc_per_node=2 -m tasks.train [--task ...]
"""

import csv
import io
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from tasks import distributed, tracking
from tasks.atomic import atomic_path, write_text
from tasks.batching import batchify, bucket_batches, encode_texts, get_batch, lm_stream, pad_batch
from tasks.cli import stage_main
from tasks.errors import PipelineError
from tasks.lineage import file_md5, lineage_tags
from tasks.models import RNNClassifier, RNNLanguageModel, detach_hidden
from tasks.neural_cache import fit_cache
from tasks.params import params_hash, task_section
from tasks.ppmi_embeddings import ppmi_svd_embeddings
from tasks.vocab import SPECIALS, load_vocab, tokens_by_split

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PipelineError("params.yaml: train.device is cuda but no CUDA device is visible; set it to auto or cpu")
    return torch.device(name)


def autocast(device: torch.device):
    # bf16 needs no loss scaling, unlike fp16; on CPU autocast would only slow the RNN down.
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def loss_totals(model: nn.Module, data: torch.Tensor, bptt: int, device: torch.device) -> tuple[float, int]:
    """(summed NLL, target count) over a batchified (N, B) tensor, state carried along; a rank's
    shard may have no columns (0.0, 0)."""
    model.eval()
    total, count, hidden = 0.0, 0, None
    if data.size(1) == 0:
        return total, count
    for i in range(0, data.size(0) - 1, bptt):
        x, y = (t.to(device, non_blocking=True) for t in get_batch(data, i, bptt))   # (T, B)
        with autocast(device):
            loss, hidden = model(x, hidden, y)                                  # mean NLL of the window
        total += loss.item() * y.numel()
        count += y.numel()
    return total, count


def estimate_loss(model: nn.Module, data: torch.Tensor, bptt: int, device: torch.device) -> float:
    """Mean cross-entropy per target token over a batchified (N, B) tensor, state carried along."""
    total, count = loss_totals(model, data, bptt, device)
    return total / max(count, 1)


def make_scheduler(optimizer, cfg, steps_per_epoch: int):
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.plateau_factor, patience=cfg.plateau_patience)
    warmup, total = cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def fit(model: nn.Module, run_epoch: Callable, cfg, device: torch.device, steps_per_epoch: int,
        on_epoch_end: Callable[[dict], None] | None = None, checkpoint: Path | None = None,
        fingerprint: str = "", monitor: str = "val_loss", higher_is_better: bool = False) -> list[dict]:
    """The loop both tasks share: optimizer, LR schedule, clipping, early stopping on `monitor`
    (best weights restored), an epoch checkpoint to resume from, and the `max_minutes` budget.

    `run_epoch(epoch, step, lr)` trains one epoch, calling `step(loss)` once per batch, then
    validates; it returns the epoch's history row (holding `monitor`). `lr()` is the current rate.
    `checkpoint`: written after every epoch (by rank 0); when it exists with the same `fingerprint`,
    training resumes from it. Distributed, every rank takes rank 0's epoch row and time-budget verdict,
    so all make the same scheduler, best-weights and stopping decisions.
    """
    model.to(device)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    history: list[dict] = []
    worst = -math.inf if higher_is_better else math.inf
    best_val, best_state, bad_epochs, start_epoch = worst, None, 0, 1

    if checkpoint and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"].cpu())  # map_location may have moved it to CUDA
            history, best_val, best_state = state["history"], state["best_val"], state["best_state"]
            bad_epochs, start_epoch = state["bad_epochs"], state["epoch"] + 1
            log.info("resuming from %s after epoch %d", checkpoint, state["epoch"])
        else:
            log.info("ignoring %s: it was written for other params or data", checkpoint)

    def step(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)  # RNNs explode without it
        optimizer.step()
        if cfg.scheduler == "cosine":
            scheduler.step()

    def lr() -> float:
        return optimizer.param_groups[0]["lr"]

    started = time.monotonic()
    for epoch in range(start_epoch, cfg.epochs + 1):
        if bad_epochs >= cfg.early_stopping_patience:
            break
        row = {"epoch": epoch, **run_epoch(epoch, step, lr)}
        row, out_of_time = distributed.from_main((row, (time.monotonic() - started) / 60 > cfg.max_minutes))
        history.append(row)
        score = row[monitor]
        if cfg.scheduler == "plateau":
            scheduler.step(-score if higher_is_better else score)
        if (score > best_val) if higher_is_better else (score < best_val):
            best_val, bad_epochs = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if on_epoch_end:
            on_epoch_end(row)
        if checkpoint and distributed.is_main():
            with atomic_path(checkpoint) as tmp:
                torch.save({"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "rng": torch.get_rng_state(), "history": history, "best_val": best_val,
                            "best_state": best_state, "bad_epochs": bad_epochs}, tmp)
        if out_of_time:
            log.info("stopping: train.max_minutes=%s reached", cfg.max_minutes)
            break
    if bad_epochs >= cfg.early_stopping_patience:
        log.info("early stopping: no %s improvement for %d epochs", monitor, bad_epochs)
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def train_language_model(model: nn.Module, train_data: torch.Tensor, val_data: torch.Tensor, cfg,
                         device: torch.device, on_epoch_end: Callable[[dict], None] | None = None,
                         checkpoint: Path | None = None, fingerprint: str = "") -> list[dict]:
    """Train in place; at the end `model` holds the best weights by validation loss.

    train_data / val_data: batchified (N, B) id tensors (distributed: this rank's columns; every
    rank has the same N, hence the same number of steps). `checkpoint`: file written after every
    epoch; when it exists with the same `fingerprint`, training resumes from it.
    """
    model.to(device)
    # The adaptive output computes a tail cluster only for windows with a target in it: a parameter
    # can go unused in a step, which DDP must be told about.
    net = distributed.wrap(model, device, find_unused_parameters=getattr(model, "output", "") == "adaptive")

    def run_epoch(epoch: int, step: Callable, lr: Callable) -> dict:
        model.train()
        t0, total_loss, n_tokens, hidden = time.perf_counter(), 0.0, 0, None
        for i in range(0, train_data.size(0) - 1, cfg.bptt):
            x, y = (t.to(device, non_blocking=True) for t in get_batch(train_data, i, cfg.bptt))  # (T, B)
            hidden = detach_hidden(hidden)  # truncated BPTT: keep the state, drop its history
            with autocast(device):
                loss, hidden = net(x, hidden, y)                                        # mean NLL of (T, B)
            step(loss)
            total_loss += loss.item() * y.numel()
            n_tokens += y.numel()
        seconds = time.perf_counter() - t0
        total_loss, n_tokens = distributed.all_reduce_sum(total_loss, n_tokens)   # all ranks' tokens
        train_loss = total_loss / n_tokens
        val_total, val_count = distributed.all_reduce_sum(*loss_totals(model, val_data, cfg.bptt, device))
        val_loss = val_total / max(val_count, 1)
        row = {"train_loss": train_loss, "val_loss": val_loss, "train_ppl": math.exp(train_loss),
               "val_ppl": math.exp(val_loss), "lr": lr(), "tokens_per_s": n_tokens / seconds, "seconds": seconds}
        log.info("epoch %3d | train loss %.3f ppl %7.1f | val loss %.3f ppl %7.1f | lr %.2e | %6.0f tok/s",
                 epoch, train_loss, row["train_ppl"], val_loss, row["val_ppl"], row["lr"], row["tokens_per_s"])
        return row

    steps_per_epoch = math.ceil((train_data.size(0) - 1) / cfg.bptt)
    return fit(model, run_epoch, cfg, device, steps_per_epoch, on_epoch_end, checkpoint, fingerprint)


def history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


def set_threads(n: int) -> None:
    """Pin torch's intra-op CPU threads for this process (0 keeps torch's default, which follows
    OMP_NUM_THREADS or else uses every core): a small RNN gains little from threads, and on a busy
    machine they spin waiting for each other."""
    if n:
        torch.set_num_threads(n)


def class_weights(labels: np.ndarray, num_classes: int, mode: str, imbalance_ratio: float) -> torch.Tensor | None:
    """Balanced weights n / (C * n_c) when `mode` is balanced, or auto and the largest class
    outnumbers the smallest by more than `imbalance_ratio`; else None (plain cross-entropy)."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    if mode == "none" or (mode == "auto" and counts.max() <= imbalance_ratio * counts[counts > 0].min()):
        return None
    return torch.tensor(len(labels) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)


@torch.no_grad()
def classify(model: nn.Module, seqs: list[list[int]], device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, C) for id sequences, in input order (batched by length for speed)."""
    model.eval()
    probs = np.zeros((len(seqs), model.head.out_features), dtype=np.float32)
    for idx in bucket_batches([len(s) for s in seqs], batch_size, shuffle=False):
        x, lengths = pad_batch(seqs, idx)                                       # (B, T), (B,)
        logits = model(x.to(device), lengths)                                   # (B, C)
        probs[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probs


def validation_probs(model: nn.Module, seqs: list[list[int]], device: torch.device) -> np.ndarray:
    """`classify` over all of `seqs`; distributed, each rank scores every world-th review and the
    shares are gathered, so every rank holds the same (N, C) probabilities."""
    world, rank = distributed.world_size(), distributed.rank()
    mine = list(range(rank, len(seqs), world))
    shares = distributed.all_gather((mine, classify(model, [seqs[i] for i in mine], device)))
    probs = np.zeros((len(seqs), model.head.out_features), dtype=np.float32)
    for idx, part in shares:
        probs[idx] = part
    return probs


def train_classifier(model: nn.Module, train_seqs: list[list[int]], train_y: np.ndarray, val_seqs: list[list[int]],
                     val_y: np.ndarray, cfg, device: torch.device, weights: torch.Tensor | None = None,
                     on_epoch_end: Callable[[dict], None] | None = None, checkpoint: Path | None = None,
                     fingerprint: str = "") -> list[dict]:
    """Train in place on id sequences with integer labels; `model` ends with the best weights by
    `cfg.monitor` (val_loss or val_macro_f1)."""
    lengths = [len(s) for s in train_seqs]
    y_all = torch.as_tensor(train_y, dtype=torch.long)
    loss_weights = weights.to(device) if weights is not None else None
    model.to(device)
    net = distributed.wrap(model, device)

    def run_epoch(epoch: int, step: Callable, lr: Callable) -> dict:
        model.train()
        t0, total_loss, n_seen, n_tokens = time.perf_counter(), 0.0, 0, 0
        # The same seeded batches on every rank; each trains on its own disjoint share of them.
        batches = bucket_batches(lengths, cfg.batch_size, cfg.bucket_size, seed=cfg.seed + epoch)
        for idx in distributed.shard_batches(batches):
            x, lens = pad_batch(train_seqs, idx)                                   # (B, T), (B,)
            y = y_all[idx].to(device)                                              # (B,)
            # fp32 even on CUDA: bf16 autocast of packed cuDNN RNNs is untested here, and this model is small
            logits = net(x.to(device, non_blocking=True), lens)                    # (B, C)
            loss = nn.functional.cross_entropy(logits.float(), y, weight=loss_weights)
            step(loss)
            total_loss += loss.item() * len(idx)
            n_seen += len(idx)
            n_tokens += int(lens.sum())
        seconds = time.perf_counter() - t0
        total_loss, n_seen, n_tokens = distributed.all_reduce_sum(total_loss, n_seen, n_tokens)
        probs = validation_probs(model, val_seqs, device)                          # (N, C)
        val_loss = nn.functional.cross_entropy(torch.log(torch.from_numpy(probs).clamp_min(1e-9)),
                                               torch.as_tensor(val_y, dtype=torch.long), weight=weights).item()
        pred = probs.argmax(1)
        row = {"train_loss": total_loss / n_seen, "val_loss": val_loss, "val_accuracy": accuracy_score(val_y, pred),
               "val_macro_f1": f1_score(val_y, pred, average="macro", zero_division=0), "lr": lr(),
               "reviews_per_s": n_seen / seconds, "tokens_per_s": n_tokens / seconds, "seconds": seconds}
        log.info("epoch %3d | train loss %.3f | val loss %.3f acc %.3f macro-F1 %.3f | lr %.2e | %5.0f reviews/s",
                 epoch, row["train_loss"], val_loss, row["val_accuracy"], row["val_macro_f1"], row["lr"], row["reviews_per_s"])
        return row

    steps_per_epoch = max(1, math.ceil(len(train_seqs) / cfg.batch_size) // distributed.world_size())
    return fit(model, run_epoch, cfg, device, steps_per_epoch, on_epoch_end, checkpoint, fingerprint,
               monitor=cfg.monitor, higher_is_better=cfg.monitor != "val_loss")


def init_embedding(embedding: nn.Embedding, train_seqs: list[list[int]], cfg) -> None:
    """Overwrite the word rows (not the specials') with PPMI-SVD vectors of the train split."""
    vectors = ppmi_svd_embeddings(train_seqs, embedding.num_embeddings, embedding.embedding_dim, cfg.ppmi_window,
                                  len(SPECIALS), cfg.seed)
    if vectors is not None:
        with torch.no_grad():
            embedding.weight[len(SPECIALS):] = torch.from_numpy(vectors[len(SPECIALS):])


def classes_of(labels: list[int], names: list[str]) -> list[int | str]:
    """Class names by class index (integers when every name is one, so predictions print as given)."""
    by_index = dict(zip(labels, names))
    classes = [by_index.get(i, str(i)) for i in range(max(by_index) + 1)]
    try:
        return [int(c) for c in classes]
    except ValueError:
        return classes


def open_run(params, tp, task: str, fingerprint: str, checkpoint: Path, extra_tags: dict | None, logged: dict) -> str:
    """Open (or reopen, when resuming) the pipeline's MLflow run and log the training params."""
    cfg = tp.train
    tags = {**lineage_tags(params, tp), **(extra_tags or {})}
    run_id = tracking.start_run(params, tags, run_id=_resumable_run_id(checkpoint, fingerprint), task=task)
    with atomic_path(Path(cfg.checkpoint_dir) / "run_id") as tmp:  # a resumed run logs to the same MLflow run
        tmp.write_text(f"{fingerprint} {run_id}")
    tracking.log_params(run_id, {
        **{f"model.{k}": v for k, v in tp.model.model_dump().items()},
        **{f"train.{k}": v for k, v in cfg.model_dump().items() if k not in ("output_dir", "history", "checkpoint_dir")},
        **logged,
    })
    return run_id


def save_outputs(tp, run_id: str, checkpoint: Path, ckpt: dict, history: list[dict]) -> None:
    out = Path(tp.train.output_dir)
    with atomic_path(out / "model.pt") as tmp:
        torch.save({**ckpt, "params": tp.model_dump(mode="json", by_alias=True), "history": history}, tmp)
    write_text(history_csv(history), tp.train.history)
    tracking.save_run_id(out, run_id)
    checkpoint.unlink(missing_ok=True)  # finished: nothing left to resume


def fingerprint_of(tp, vocab, split_path: str) -> str:
    """A checkpoint is resumed only for the same model, loop settings, vocabulary, split and number
    of processes (a process count other than 1 changes what each step sees)."""
    world = distributed.world_size()
    return (f"{params_hash(tp.model)}-{params_hash(tp.train)}-{vocab.hash}-{file_md5(split_path)[:12]}"
            + (f"-world{world}" if world > 1 else ""))


def start_tracking(params, tp, task, fingerprint, checkpoint, extra_tags, logged) -> tuple[str | None, Callable | None]:
    """Rank 0 opens the MLflow run; other ranks log nothing (run id and epoch logger None)."""
    if not distributed.is_main():
        return None, None
    run_id = open_run(params, tp, task, fingerprint, checkpoint, extra_tags, {**logged, "world_size": distributed.world_size()})
    return run_id, tracking.epoch_logger(run_id)


def run_classifier(params, tp, vocab, device: torch.device, extra_tags: dict[str, str] | None, task: str) -> dict:
    """Train the review classifier on the split; save models/<task>/model.pt and the MLflow run id."""
    cfg = tp.train
    table = pq.read_table(tp.split.output, columns=["tokens", "label", "label_name", "split"]).to_pydict()
    classes = classes_of(table["label"], table["label_name"])
    data = {s: ([], []) for s in ("train", "val")}
    for tokens, label, split in zip(table["tokens"], table["label"], table["split"]):
        if split in data:
            data[split][0].append(tokens)
            data[split][1].append(label)
    train_seqs, val_seqs = (encode_texts(data[s][0], vocab, tp.model.max_len) for s in ("train", "val"))
    train_y, val_y = (np.array(data[s][1], dtype=np.int64) for s in ("train", "val"))
    if not train_seqs or not val_seqs:
        raise PipelineError(f"{tp.split.output}: no train or val reviews; rerun split with more reviews")
    if math.ceil(len(train_seqs) / cfg.batch_size) < distributed.world_size():
        raise PipelineError(f"{tp.split.output}: {len(train_seqs)} train reviews make fewer batches of {cfg.batch_size} "
                            f"than the {distributed.world_size()} processes; lower {task}.train.batch_size or --nproc_per_node")
    weights = class_weights(train_y, len(classes), cfg.class_weights, cfg.imbalance_ratio)
    model_args = {"vocab_size": len(vocab), "num_classes": len(classes), **tp.model.model_dump()}
    model = RNNClassifier(**model_args)
    if cfg.embedding_init == "ppmi":
        init_embedding(model.embedding, train_seqs, cfg)
    if distributed.world_size() > 1:
        torch.manual_seed(cfg.seed + distributed.rank())  # same initial weights, own dropout masks
    fingerprint = fingerprint_of(tp, vocab, tp.split.output)
    checkpoint = Path(cfg.checkpoint_dir) / "last.pt"
    run_id, on_epoch_end = start_tracking(params, tp, task, fingerprint, checkpoint, extra_tags, {
        "vocab.size": len(vocab), "data.train_reviews": len(train_seqs), "data.classes": len(classes),
        "class_weights": "none" if weights is None else ",".join(f"{w:.3f}" for w in weights.tolist()),
        "device": str(device),
    })
    if weights is not None:
        log.info("classes are imbalanced: loss weights %s", dict(zip(classes, weights.tolist())))
    history = train_classifier(model, train_seqs, train_y, val_seqs, val_y, cfg, device, weights,
                               on_epoch_end, checkpoint, fingerprint)
    if distributed.is_main():
        save_outputs(tp, run_id, checkpoint, {
            "kind": "classifier", "model_args": model_args, "state_dict": model.state_dict(), "itos": vocab.itos,
            "vocab_hash": vocab.hash, "tokenizer": tp.tokenize.model_dump(), "clean": tp.clean.model_dump(),
            "classes": classes}, history)
    best = max(history, key=lambda r: r["val_macro_f1"]) if cfg.monitor != "val_loss" else min(history, key=lambda r: r["val_loss"])
    return {"run_id": run_id, "epochs": len(history), "best_val_macro_f1": best["val_macro_f1"],
            "best_val_accuracy": best["val_accuracy"]}


def output_args(model_cfg, vocab_size: int) -> dict:
    """The output layer's constructor args for this vocabulary: adaptive cutoffs at or beyond the
    vocabulary size are dropped (the default [2000, 10000] fits vocabularies of any size above 2000)."""
    if model_cfg.output != "adaptive":
        return {}
    cutoffs = [c for c in model_cfg.adaptive_cutoffs if c < vocab_size]
    if not cutoffs:
        raise PipelineError(f"params.yaml: lyrics.model.adaptive_cutoffs {model_cfg.adaptive_cutoffs} are all >= the "
                            f"vocabulary size {vocab_size}; set a cutoff below it (or output: softmax)")
    if cutoffs != model_cfg.adaptive_cutoffs:
        log.info("adaptive softmax: cutoffs %s (dropped those >= the vocabulary size %d)", cutoffs, vocab_size)
    return {"adaptive_cutoffs": cutoffs}


def run(params, extra_tags: dict[str, str] | None = None, task: str = "lyrics") -> dict:
    """Train on the split, save models/<task>/model.pt (self-describing) and the MLflow run id.
    Under torchrun: one data-parallel process per rank, outputs from rank 0."""
    tp = task_section(params, task)
    with distributed.session(pick_device(tp.train.device)) as device:
        set_threads(tp.train.num_threads)
        torch.manual_seed(tp.train.seed)
        vocab = load_vocab(tp.vocab.output)
        trainer = run_classifier if task == "reviews" else run_language_model
        return trainer(params, tp, vocab, device, extra_tags, task)


def run_language_model(params, lp, vocab, device: torch.device, extra_tags: dict[str, str] | None, task: str) -> dict:
    """Train the language model on the split; save models/<task>/model.pt and the MLflow run id."""
    cfg = lp.train
    splits = tokens_by_split(lp.split.output)
    world = distributed.world_size()
    if cfg.batch_size < world:
        raise PipelineError(f"params.yaml: lyrics.train.batch_size={cfg.batch_size} is split across {world} processes; "
                            f"set it to at least {world} or lower --nproc_per_node")
    # Columns are cut once for all processes, then each takes its block of them (N, B / world).
    train_data = batchify(lm_stream(splits["train"], vocab), cfg.batch_size)   # (N, B)
    val_stream = lm_stream(splits["val"], vocab)                                # (N,): also what the cache is fitted on
    val_data = batchify(val_stream, min(cfg.batch_size, 8))
    if train_data.size(0) <= cfg.bptt or val_data.size(0) < 2:
        raise PipelineError(f"{lp.split.output}: corpus too small for batch_size={cfg.batch_size} x bptt={cfg.bptt}; "
                            f"add lyrics or lower lyrics.train.batch_size / bptt")
    n_train_tokens = train_data.numel()
    train_data, val_data = distributed.shard_columns(train_data), distributed.shard_columns(val_data)
    model_args = {"vocab_size": len(vocab), **lp.model.model_dump(), **output_args(lp.model, len(vocab))}
    model = RNNLanguageModel(**model_args)
    if world > 1:
        torch.manual_seed(cfg.seed + distributed.rank())  # same initial weights, own dropout masks
    fingerprint = fingerprint_of(lp, vocab, lp.split.output)
    checkpoint = Path(cfg.checkpoint_dir) / "last.pt"
    run_id, on_epoch_end = start_tracking(params, lp, task, fingerprint, checkpoint, extra_tags, {
        "vocab.size": len(vocab), "data.train_tokens": n_train_tokens, "device": str(device)})
    history = train_language_model(model, train_data, val_data, cfg, device, on_epoch_end, checkpoint, fingerprint)
    best = min(history, key=lambda r: r["val_loss"])
    result = {"run_id": run_id, "epochs": len(history), "best_val_ppl": best["val_ppl"]}
    if distributed.is_main():
        cache = fit_language_model_cache(model, val_stream, run_id) if cfg.continuous_cache else None
        save_outputs(lp, run_id, checkpoint, {
            "model_args": model_args, "state_dict": model.state_dict(), "itos": vocab.itos,
            "vocab_hash": vocab.hash, "tokenizer": lp.tokenize.model_dump(), "cache": cache}, history)
        result["cache"] = cache
    return result


def fit_language_model_cache(model: RNNLanguageModel, val_stream: torch.Tensor, run_id: str) -> dict:
    """Fit the continuous cache's three settings on the validation stream (no training) and log them."""
    cache = fit_cache(model, val_stream)
    log.info("continuous cache: theta %.1f, lambda %.1f, window %d: validation perplexity %.1f -> %.1f%s",
             cache["theta"], cache["lam"], cache["window"], cache["val_ppl_without"], cache["val_ppl_with"],
             "" if cache["lam"] else " (off: it does not help on this validation split)")
    tracking.log_params(run_id, {f"cache.{k}": cache[k] for k in ("theta", "lam", "window")})
    tracking.log_metrics(run_id, {"val_ppl_without_cache": cache["val_ppl_without"], "val_ppl_with_cache": cache["val_ppl_with"]})
    return cache


def _resumable_run_id(checkpoint: Path, fingerprint: str) -> str | None:
    marker = checkpoint.parent / "run_id"
    if checkpoint.exists() and marker.exists():
        saved_fp, _, run_id = marker.read_text().partition(" ")
        return run_id if saved_fp == fingerprint else None
    return None


if __name__ == "__main__":
    stage_main(run, __doc__)
