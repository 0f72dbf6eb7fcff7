"""Tier 3, model: classifier shapes on packed batches, length bucketing, class weights, and a short
training run whose loss falls."""

import random

import numpy as np
import pytest
import torch
from torch import nn

from tasks.common.params import section_from_yaml
from tasks.reviews.batching import IdSequences, bucket_batches, encode_texts, pad_batch
from tasks.reviews.model import RNNClassifier
from tasks.reviews.params import TrainClassifier
from tasks.reviews.review_stream import SplitReader, count_split
from tasks.reviews.train import class_weights, train_classifier
from tasks.serving.review_predictor import classify
from tasks.text.vocab import Vocab, build_vocab
from tests.helpers import make_reviews, write_split_file


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("pooling", ["attention", "max", "last"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_classifier_shapes_with_packed_batches(cell, pooling, bidirectional):
    torch.manual_seed(0)
    model = RNNClassifier(
        vocab_size=30,
        num_classes=3,
        embedding_size=8,
        hidden_size=6,
        num_layers=2,
        cell=cell,
        bidirectional=bidirectional,
        pooling=pooling,
        dropout=0.1,
    ).eval()
    seqs = [[5, 6, 7, 8, 9], [4], [10, 11, 12]]
    x, lengths = pad_batch(seqs, [0, 1, 2])  # (B, T) = (3, 5), unsorted lengths
    assert x.shape == (3, 5) and lengths.tolist() == [5, 1, 3] and x[1, 1:].eq(0).all()
    logits = model(x, lengths)
    assert logits.shape == (3, 3)
    # Padding must not change an answer: the same review alone (no padding) gives the same logits.
    alone = model(*pad_batch(seqs, [1]))
    assert torch.allclose(logits[1], alone[0], atol=1e-5)
    # Gradients flow through the packed sequence and the pooling to every trainable parameter
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient"
    assert model.embedding.weight.grad[0].eq(0).all()  # the padding row learns nothing


def test_encode_truncates_to_max_len_and_never_returns_empty():
    vocab = Vocab(["<pad>", "<unk>", "<bos>", "<eos>", "好", "差"])
    seqs = encode_texts([["好"] * 50, [], ["外星语"]], vocab, max_len=10)
    assert seqs == [[4] * 10, [1], [1]]


def test_id_sequences_index_the_flat_ids_and_pad_like_lists():
    lists = [[4, 5, 6], [7], [8, 9], [1, 1, 1, 1]]
    seqs = IdSequences(np.array([4, 5, 6, 7, 8, 9, 1, 1, 1, 1], dtype=np.int32), np.array([0, 3, 4, 6, 10]))
    assert len(seqs) == 4 and [s.tolist() for s in seqs] == lists and seqs[-1].tolist() == [1, 1, 1, 1]
    with pytest.raises(IndexError):
        seqs[4]
    for got, want in zip(pad_batch(seqs, [2, 0, 3]), pad_batch(lists, [2, 0, 3])):
        assert torch.equal(got, want)


def test_bucket_batches_cover_every_index_once_with_similar_lengths():
    lengths = [random.Random(i).randint(1, 100) for i in range(1000)]
    batches = bucket_batches(lengths, batch_size=32, bucket_size=20, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    assert batches == bucket_batches(lengths, batch_size=32, bucket_size=20, seed=3)  # seeded
    assert batches != bucket_batches(lengths, batch_size=32, bucket_size=20, seed=4)  # reshuffled per epoch
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 10  # vs ~95 for random batches: little padding
    eval_batches = bucket_batches(lengths, 32, shuffle=False)
    assert sorted(i for b in eval_batches for i in b) == list(range(1000))


def test_class_weights_only_when_imbalanced():
    balanced = np.array([0] * 50 + [1] * 45)
    skewed = np.array([0] * 90 + [1] * 10)
    balanced, skewed = np.bincount(balanced), np.bincount(skewed)  # reviews per class
    assert class_weights(balanced, 2, "auto", 1.5) is None
    w = class_weights(skewed, 2, "auto", 1.5)
    assert w is not None and w[1] > w[0] and torch.allclose(w, torch.tensor([100 / 180, 100 / 20]))
    assert class_weights(skewed, 2, "none", 1.5) is None
    assert class_weights(balanced, 2, "balanced", 1.5) is not None
    assert class_weights(np.array([90]), 2, "balanced", 1.5)[1] > 1  # a class with no train review


def test_short_training_run_loss_falls(tmp_path):
    torch.manual_seed(0)
    from tasks.text.segment import segment

    rows = make_reviews(random.Random(0), 240)
    tokens = [segment(t) for t, _ in rows]
    y = np.array([label for _, label in rows])
    vocab, _ = build_vocab(tokens[:200], 1, 1000)
    split = write_split_file(tmp_path / "split.parquet", tokens, y, ["train"] * 200 + ["val"] * 40, 64)
    cfg = section_from_yaml(
        TrainClassifier,
        "reviews.train",
        output_dir="-",
        history="-",
        checkpoint_dir="-",
        batch_size=16,
        epochs=4,
        lr=0.01,
        early_stopping_patience=4,
        scheduler="cosine",
        warmup_epochs=0,
    )
    model = RNNClassifier(len(vocab), 2, 16, 16, cell="gru", pooling="attention")
    history: list[dict] = []
    counts = count_split(split, 100)
    weights = class_weights(counts.train_labels, 2, "balanced", 1.5)
    reader = SplitReader(split, vocab, max_len=20, batch_rows=100)
    train_classifier(model, reader, counts, cfg, torch.device("cpu"), weights, on_epoch_end=history.append)
    assert len(history) == 4 and [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"] * 0.7
    assert history[-1]["lr"] < cfg.lr  # the cosine schedule ran
    held_out = encode_texts(tokens[200:], vocab, 20)
    probs = classify(model, held_out, torch.device("cpu"))
    assert probs.shape == (40, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == y[200:]).mean() >= 0.8  # the best (restored) weights classify held-out reviews


def _noisy_reviews(n: int, seed: int) -> tuple[list[list[str]], np.ndarray]:
    """Each review: one telling word (好 / 差) among many label-free filler words."""
    rng = random.Random(seed)
    tokens, labels = [], []
    for _ in range(n):
        y = rng.random() < 0.3  # imbalanced: a heavily regularised model says "0" always
        tokens.append([rng.choice(["好", "棒"] if y else ["差", "烂"])] + [f"w{rng.randrange(300)}" for _ in range(12)])
        labels.append(int(y))
    return tokens, np.array(labels)


def test_tfidf_baseline_chooses_C_on_validation():
    from sklearn.metrics import f1_score

    from tasks.reviews.tfidf_baseline import fit_tfidf_baseline

    (train_x, train_y), (val_x, val_y) = _noisy_reviews(300, 0), _noisy_reviews(200, 1)
    grid = [1e-3, 0.1, 10.0]
    model, chosen = fit_tfidf_baseline(train_x, train_y, C=grid, min_df=1, val_tokens=val_x, val_y=val_y)
    scores = chosen["val_macro_f1_by_C"]
    assert sorted(scores) == grid and chosen["C"] == max(grid, key=lambda c: (scores[c], -c))
    assert scores[1e-3] < 0.5 < scores[chosen["C"]]  # the tiny C predicts the majority class only
    assert f1_score(val_y, model.predict(val_x), average="macro") == pytest.approx(scores[chosen["C"]])
    # One value: fitted as given, no validation needed; several without validation: an error
    single, info = fit_tfidf_baseline(train_x, train_y, C=0.1, min_df=1)
    assert single.named_steps["logreg"].C == 0.1 and info == {"C": 0.1, "val_macro_f1_by_C": {}}
    with pytest.raises(ValueError, match="validation"):
        fit_tfidf_baseline(train_x, train_y, C=grid, min_df=1)
