"""Training the review classifier: batches bucketed by length, class weights when the classes are
imbalanced, validation macro-F1 per epoch (the default monitor). `train.init` chooses the start:
`pretrained`, ULMFiT (the base fine-tuned as a language model on the train reviews, then the
classifier on its encoder with discriminative rates, gradual unfreezing and the slanted triangular
schedule), or a (bi)RNN from scratch with its embedding from PPMI-SVD vectors (`ppmi`) or random."""

import logging
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn
from torch.utils.data import DataLoader

from tasks.common.atomic import write_text
from tasks.common.errors import PipelineError
from tasks.common.lineage import file_md5
from tasks.common.params import base_model_of
from tasks.reviews.encoder_classifier import EncoderClassifier
from tasks.reviews.lm_finetune import finetuned_language_model
from tasks.reviews.model import RNNClassifier
from tasks.reviews.ppmi_embeddings import ppmi_svd_embeddings
from tasks.reviews.review_stream import ReviewStream, SplitCounts, SplitReader, count_split
from tasks.serving.review_predictor import classify
from tasks.split import read_batches
from tasks.text.vocab import SPECIALS
from tasks.training import distributed
from tasks.training.loop import History, TaskPieces, fit
from tasks.training.run import prepare_run, save_outputs

log = logging.getLogger(__name__)


def class_weights(counts: np.ndarray, num_classes: int, mode: str, imbalance_ratio: float) -> torch.Tensor | None:
    """Balanced weights n / (C * n_c) from the reviews per class (`counts`) when `mode` is balanced,
    or auto and the largest class outnumbers the smallest by more than `imbalance_ratio`; else None
    (plain cross-entropy)."""
    counts = np.pad(np.asarray(counts, dtype=float), (0, max(0, num_classes - len(counts))))
    if mode == "none" or (mode == "auto" and counts.max() <= imbalance_ratio * counts[counts > 0].min()):
        return None
    return torch.tensor(counts.sum() / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)


def validation_probs(model: nn.Module, val: SplitReader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """`classify` over the val reviews, read a record batch at a time: their (N, C) probabilities and
    (N,) labels. Distributed, each rank scores every world-th review and the shares are gathered, so
    every rank holds the same probabilities."""
    world, rank = distributed.world_size(), distributed.rank()
    mine, labels, seen = [], [], 0
    for seqs, y in val.batches("val"):
        idx = list(range((rank - seen) % world, len(seqs), world))
        mine.append((seen + np.array(idx, dtype=np.int64), classify(model, [seqs[i] for i in idx], device)))
        labels.append(y)
        seen += len(seqs)
    probs = np.zeros((seen, model.num_classes), dtype=np.float32)
    for share in distributed.all_gather(mine):
        for idx, part in share:
            probs[idx] = part
    return probs, np.concatenate(labels)


def epoch_batches(epoch: int, stream: ReviewStream, cfg, device: torch.device) -> DataLoader:
    """This rank's batches of the epoch (tasks/reviews/review_stream.py), read and padded in
    `loader_workers` background processes (0: in this one)."""
    stream.set_epoch(epoch)
    # Its own generator: a DataLoader draws a seed when iterated, which from the global RNG would
    # shift the dropout masks of a run resumed mid-epoch away from those of an unbroken run.
    seeded = torch.Generator().manual_seed(cfg.seed + epoch)
    workers, pin = cfg.loader_workers, torch.device(device).type == "cuda"
    return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin, generator=seeded)


def batch_loss(net: nn.Module, batch, hidden, weights, device) -> tuple[torch.Tensor, None, tuple[int, int]]:
    """(Weighted) mean cross-entropy of one batch of reviews, no state to carry, and the batch's
    review and token counts."""
    x, lens, y = batch  # (B, T), (B,), (B,)
    # fp32 even on CUDA: bf16 autocast of packed cuDNN RNNs is untested here, and this model is small
    logits = net(x.to(device, non_blocking=True), lens)  # (B, C)
    loss = nn.functional.cross_entropy(logits.float(), y.to(device), weight=weights)
    return loss, None, (len(y), int(lens.sum()))


def epoch_row(
    epoch: int, totals: dict, seconds: float, lr: float, model: nn.Module, val: SplitReader, weights, device
) -> dict:
    """Validate on all of the val reviews and log the epoch: its history row."""
    probs, val_y = validation_probs(model, val, device)  # (N, C), (N,)
    val_loss = nn.functional.cross_entropy(
        torch.log(torch.from_numpy(probs).clamp_min(1e-9)), torch.as_tensor(val_y, dtype=torch.long), weight=weights
    ).item()
    pred = probs.argmax(1)  # (N,)
    row = {
        "train_loss": totals["loss"] / totals["reviews"],
        "val_loss": val_loss,
        "val_accuracy": accuracy_score(val_y, pred),
        "val_macro_f1": f1_score(val_y, pred, average="macro", zero_division=0),
        "lr": lr,
        "reviews_per_s": totals["reviews"] / seconds,
        "tokens_per_s": totals["tokens"] / seconds,
        "seconds": seconds,
    }
    log.info(
        "epoch %3d | train loss %.3f | val loss %.3f acc %.3f macro-F1 %.3f | lr %.2e | %5.0f reviews/s",
        epoch,
        row["train_loss"],
        val_loss,
        row["val_accuracy"],
        row["val_macro_f1"],
        row["lr"],
        row["reviews_per_s"],
    )
    return row


def gradual_unfreezing(model: nn.Module, cfg) -> Callable[[int], None] | None:
    """ULMFiT's schedule for a model with layer groups: epoch e trains the top e groups (the head
    alone first), so the pretrained layers start moving only once the new head makes sense."""
    if not (getattr(cfg, "gradual_unfreezing", False) and hasattr(model, "freeze_to")):
        return None
    return model.freeze_to


def classifier_pieces(model: nn.Module, stream: ReviewStream, val: SplitReader, cfg, device, weights=None):
    """What `fit` needs to train the classifier on the streamed train reviews, validating on the
    val reviews; `weights`: the class weights of the loss (None: plain cross-entropy)."""
    loss_weights = weights.to(device) if weights is not None else None  # validation weighs on the CPU
    unfreeze = gradual_unfreezing(model, cfg)
    return TaskPieces(
        batches=partial(epoch_batches, stream=stream, cfg=cfg, device=device),
        batch_loss=partial(batch_loss, weights=loss_weights, device=device),
        epoch_row=partial(epoch_row, model=model, val=val, weights=weights, device=device),
        counts=("reviews", "tokens"),
        steps_per_epoch=len(stream),
        monitor=cfg.monitor,
        higher_is_better=cfg.monitor != "val_loss",
        start_epoch=unfreeze,
        find_unused_parameters=unfreeze is not None,  # DDP: frozen layers get no gradient
        resumable_mid_epoch=True,  # no state carried between batches; an epoch's stream replays exactly
    )


def train_stream(reader: SplitReader, counts: SplitCounts, cfg) -> ReviewStream:
    """This process's share of the train reviews, batched as `cfg` says."""
    world, rank = distributed.world_size(), distributed.rank()
    return ReviewStream(
        reader, counts.reviews["train"], cfg.batch_size, cfg.bucket_size, cfg.shuffle_buffer, cfg.seed, rank, world
    )


def train_classifier(
    model: nn.Module,
    reader: SplitReader,
    counts: SplitCounts,
    cfg,
    device: torch.device,
    weights: torch.Tensor | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
    checkpoint: Path | None = None,
    fingerprint: str = "",
) -> list[dict]:
    """Train in place on the split `reader` reads; `model` ends with the best weights by
    `cfg.monitor` (val_loss or val_macro_f1)."""
    pieces = classifier_pieces(model, train_stream(reader, counts, cfg), reader, cfg, device, weights)
    return fit(model, pieces, cfg, device, on_epoch_end, checkpoint, fingerprint)


def init_embedding(embedding: nn.Embedding, train_seqs: Iterable[np.ndarray], cfg) -> None:
    """Overwrite the word rows (not the specials') with PPMI-SVD vectors of the train split."""
    vectors = ppmi_svd_embeddings(
        train_seqs, embedding.num_embeddings, embedding.embedding_dim, cfg.ppmi_window, len(SPECIALS), cfg.seed
    )
    if vectors is not None:
        with torch.no_grad():
            embedding.weight[len(SPECIALS) :] = torch.from_numpy(vectors[len(SPECIALS) :])


def classes_of(names_by_label: dict[int, str]) -> list[int | str]:
    """Class names by class index (integers when every name is one, so predictions print as given)."""
    classes = [names_by_label.get(i, str(i)) for i in range(max(names_by_label) + 1)]
    try:
        return [int(c) for c in classes]
    except ValueError:
        return classes


def load_split(tp, vocab, task: str) -> tuple[SplitReader, SplitCounts, list, dict]:
    """The split as training reads it: its reader (ids cut to max_len, `split.batch_rows` rows at a
    time), its counts, the class names by class index, and, for `init: pretrained` only, the train
    and val token lists (whole, for the language model; empty otherwise). Nothing else of the split
    stays in memory: the training batches are streamed (tasks/reviews/review_stream.py)."""
    cfg = tp.train
    counts = count_split(tp.split.output, tp.split.batch_rows)
    if not counts.reviews["train"] or not counts.reviews["val"]:
        raise PipelineError(f"{tp.split.output}: no train or val reviews; rerun split with more reviews")
    if counts.reviews["train"] // distributed.world_size() < 1:
        raise PipelineError(
            f"{tp.split.output}: {counts.reviews['train']} train reviews are fewer than the "
            f"{distributed.world_size()} processes; lower --nproc_per_node"
        )
    tokens = split_token_lists(tp.split.output, tp.split.batch_rows) if cfg.init == "pretrained" else {}
    reader = SplitReader(tp.split.output, vocab, tp.model.max_len, tp.split.batch_rows)
    return reader, counts, classes_of(counts.names_by_label), tokens


def split_token_lists(path, batch_rows: int) -> dict[str, list[list[str]]]:
    """The train and val reviews' token lists, whole (the language model fine-tunes on them)."""
    tokens = {"train": [], "val": []}
    for batch in read_batches(path, ["tokens", "split"], batch_rows):
        rows = batch.to_pydict()
        for review, split in zip(rows["tokens"], rows["split"]):
            if split in tokens:
                tokens[split].append(review)
    return tokens


def build_classifier(
    tp, vocab, num_classes: int, reader: SplitReader, tokens: dict, device, run_id
) -> tuple[nn.Module, dict]:
    """The classifier to train and its checkpoint's description: on the fine-tuned encoder of the
    pretrained base (`init: pretrained`), or a (bi)RNN from scratch (embedding from PPMI or random)."""
    cfg = tp.train
    if cfg.init != "pretrained":
        model_args = {"vocab_size": len(vocab), "num_classes": num_classes, **tp.model.model_dump(exclude={"encoder"})}
        model = RNNClassifier(**model_args)
        if cfg.init == "ppmi":
            init_embedding(model.embedding, reader.sequences("train"), cfg)
        write_text("", tp.lm.history)  # the stage's declared output (dvc.yaml): no language model epochs
        return model, {"architecture": "rnn", "model_args": model_args}
    if not base_model_of(tp):
        raise PipelineError(
            "params.yaml: reviews.train.init is pretrained but reviews.base_model is null; set it to the "
            "pretrain stage's model.pt, or reviews.train.init: ppmi to train from scratch"
        )
    lm, lm_args, lm_history = finetuned_language_model(tp, vocab, tokens["train"], tokens["val"], device, run_id)
    enc = tp.model.encoder
    lm_args = {**lm_args, "dropout": enc.dropout, "embedding_dropout": enc.embedding_dropout}
    lm_args["weight_dropout"] = enc.weight_dropout
    model_args = {
        "lm_args": lm_args,
        "num_classes": num_classes,
        "head_hidden": enc.head_hidden,
        "head_dropout": enc.head_dropout,
        "max_len": tp.model.max_len,
    }
    model = EncoderClassifier(**model_args)
    model.lm.load_state_dict(lm.state_dict())
    return model, {"architecture": "encoder", "model_args": model_args, "lm_history": lm_history}


def loop_settings(cfg):
    """The training loop's settings: train's own, or with init: pretrained its `finetune` block's
    (ULMFiT's rates, schedule and epochs) in place of the from-scratch ones."""
    if cfg.init != "pretrained":
        return cfg
    return cfg.model_copy(update=cfg.finetune.model_dump())


def train(params, tp, vocab, device: torch.device, extra_tags: dict[str, str] | None, task: str, on_epoch=None) -> dict:
    """Train the review classifier on the split; save models/<task>/model.pt and the MLflow run id."""
    cfg = loop_settings(tp.train)
    reader, counts, classes, tokens = load_split(tp, vocab, task)
    weights = class_weights(counts.train_labels, len(classes), cfg.class_weights, cfg.imbalance_ratio)
    logged = {
        "vocab.size": len(vocab),
        "data.train_reviews": counts.reviews["train"],
        "data.classes": len(classes),
        "class_weights": "none" if weights is None else ",".join(f"{w:.3f}" for w in weights.tolist()),
        "device": str(device),
    }
    base = base_model_of(tp)
    data_id = file_md5(tp.split.output) + (f"-{file_md5(base)}" if base else "")
    run_id, on_epoch_end, checkpoint, fingerprint = prepare_run(
        params, tp, vocab, task, extra_tags, logged, on_epoch, data_id=data_id
    )
    model, described = build_classifier(tp, vocab, len(classes), reader, tokens, device, run_id)
    if weights is not None:
        log.info("classes are imbalanced: loss weights %s", dict(zip(classes, weights.tolist())))
    pieces = classifier_pieces(model, train_stream(reader, counts, cfg), reader, cfg, device, weights)
    history = fit(model, pieces, cfg, device, on_epoch_end, checkpoint, fingerprint)
    if distributed.is_main():
        save_outputs(
            tp,
            run_id,
            checkpoint,
            {
                "kind": "classifier",
                **described,  # architecture, model_args (and the language model's fine-tuning history)
                "state_dict": model.state_dict(),
                "itos": vocab.itos,
                "vocab_hash": vocab.hash,
                "tokenizer": tp.tokenize.model_dump(),
                "clean": tp.clean.model_dump(),
                "classes": classes,
            },
            history,
            history.stopped_by,
        )
        (Path(cfg.checkpoint_dir) / "language_model.pt").unlink(missing_ok=True)  # finished: nothing to resume
    return summary(history, cfg.monitor, run_id)


def summary(history: History, monitor: str, run_id: str | None) -> dict:
    """The stage's result: the MLflow run id, the epochs trained and what stopped them, the best
    epoch's val scores."""
    pick = min if monitor == "val_loss" else max
    best = pick(history, key=lambda r: r[monitor])
    return {
        "run_id": run_id,
        "epochs": len(history),
        "stopped_by": history.stopped_by,
        "best_val_macro_f1": best["val_macro_f1"],
        "best_val_accuracy": best["val_accuracy"],
    }
