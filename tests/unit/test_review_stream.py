"""The streamed training data of the review classifier (tasks/reviews/review_stream.py): ids equal
to the in-memory encoding, every train review once per epoch in a seeded order, disjoint equal DDP
shares, and a run killed mid-epoch resuming to the weights of an unbroken one."""

import random

import numpy as np
import pyarrow as pa
import pytest
import torch

from tasks.common.params import section_from_yaml
from tasks.reviews.batching import encode_texts
from tasks.reviews.model import RNNClassifier
from tasks.reviews.params import TrainClassifier
from tasks.reviews.review_stream import ReviewStream, SplitReader, count_split
from tasks.reviews.train import classifier_pieces, train_stream
from tasks.text.vocab import SPECIALS, Vocab
from tests.helpers import write_split_file

SPLIT_OF = ("train",) * 7 + ("val", "test", "train")  # 80 % train, in a repeating pattern


def numbered_split(tmp_path, n=600, row_group_rows=64):
    """n reviews whose first token names the review (w<i>), so a batch tells which reviews it holds."""
    rng = random.Random(0)
    tokens = [[f"w{i}"] + [f"t{rng.randint(0, 20)}" for _ in range(rng.randint(0, 12))] for i in range(n)]
    labels = [i % 3 for i in range(n)]
    splits = [SPLIT_OF[i % len(SPLIT_OF)] for i in range(n)]
    path = write_split_file(tmp_path / "split.parquet", tokens, labels, splits, row_group_rows)
    vocab = Vocab(SPECIALS + [f"w{i}" for i in range(n)] + [f"t{k}" for k in range(15)])  # t15..t20: <unk>
    return path, vocab, tokens, labels, splits


def reviews_of(batches, vocab):
    """The review numbers of each batch (from the first id of each row), and every label seen."""
    seen, labels = [], []
    for x, lengths, y in batches:
        assert x.shape == (len(y), int(lengths.max())) and (x[:, 0] >= len(SPECIALS)).all()
        assert all(x[row, lengths[row] :].eq(0).all() for row in range(len(y)))  # padding after each review
        seen.append([int(vocab.itos[i][1:]) for i in x[:, 0].tolist()])
        labels += y.tolist()
    return seen, labels


def test_arrow_encoding_equals_the_in_memory_encoding(tmp_path):
    path, vocab, tokens, *_ = numbered_split(tmp_path)
    reader = SplitReader(path, vocab, max_len=5, batch_rows=50)
    tokens[3] = []  # an empty review becomes [<unk>]
    write_split_file(path, tokens, [0] * len(tokens), ["train"] * len(tokens), 64)
    got = [s.tolist() for seqs, _ in reader.batches("train") for s in seqs]
    assert got == encode_texts(tokens, vocab, 5) and got[3] == [vocab.stoi["<unk>"]]
    assert len(reader.encode(pa.array([], pa.list_(pa.string())))) == 0  # a batch with no review of a split


def test_counts_give_sizes_class_counts_and_names(tmp_path):
    path, _, _, labels, splits = numbered_split(tmp_path)
    counts = count_split(path, batch_rows=50)
    assert counts.reviews == {s: splits.count(s) for s in ("train", "val", "test")}
    train_labels = [y for y, s in zip(labels, splits) if s == "train"]
    assert counts.train_labels.tolist() == np.bincount(train_labels).tolist()
    assert counts.names_by_label == {0: "0", 1: "1", 2: "2"}


@pytest.mark.parametrize("shuffle_buffer", [50, 10_000])  # smaller than the split (replacement) and larger (whole)
def test_an_epoch_holds_every_train_review_once_in_a_seeded_order(tmp_path, shuffle_buffer):
    path, vocab, _, labels, splits = numbered_split(tmp_path)
    train = [i for i, s in enumerate(splits) if s == "train"]
    stream = ReviewStream(SplitReader(path, vocab, 50, 50), len(train), 8, 4, shuffle_buffer, seed=1)
    epochs = {}
    for epoch in (1, 2):
        stream.set_epoch(epoch)
        epochs[epoch], seen_labels = reviews_of(stream, vocab)
        flat = [i for batch in epochs[epoch] for i in batch]
        assert sorted(flat) == train and len(epochs[epoch]) == len(stream)
        assert seen_labels == [labels[i] for i in flat]  # each label stays with its review
    stream.set_epoch(1)
    assert reviews_of(stream, vocab)[0] == epochs[1]  # the same epoch replays exactly
    assert epochs[1] != epochs[2]  # and each epoch is shuffled anew
    assert not any(set(batch) <= set(train[:100]) for batch in epochs[1][:5])  # not in file order


def test_ranks_take_disjoint_shares_with_the_same_number_of_batches(tmp_path):
    path, vocab, _, _, splits = numbered_split(tmp_path)
    n_train = splits.count("train")
    shares = []
    for rank in range(3):
        stream = ReviewStream(SplitReader(path, vocab, 50, 50), n_train, 8, 4, 100, seed=1, rank=rank, world=3)
        stream.set_epoch(2)
        batches, _ = reviews_of(stream, vocab)
        assert len(batches) == len(stream) == len(ReviewStream(stream.reader, n_train, 8, 4, 100, 1, 0, 3))
        shares.append({i for b in batches for i in b})
    assert not (shares[0] & shares[1] or shares[0] & shares[2] or shares[1] & shares[2])
    assert sum(map(len, shares)) >= n_train - 3 * 8  # only a rank's surplus past the smallest share is dropped


def tiny_training(tmp_path, checkpoint_every):
    path, vocab, *_ = numbered_split(tmp_path, n=400)
    cfg = section_from_yaml(
        TrainClassifier,
        "reviews.train",
        output_dir="-",
        history="-",
        checkpoint_dir="-",
        batch_size=16,
        bucket_size=2,
        shuffle_buffer=40,
        epochs=2,
        checkpoint_every=checkpoint_every,
        early_stopping_patience=5,
        scheduler="cosine",
        warmup_epochs=0,
    )
    reader = SplitReader(path, vocab, 50, 64)
    torch.manual_seed(0)
    model = RNNClassifier(len(vocab), 3, 8, 8, cell="gru", pooling="attention", dropout=0.3)
    pieces = classifier_pieces(model, train_stream(reader, count_split(path, 64), cfg), reader, cfg, "cpu")
    return model, pieces, cfg


def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_unbroken_run(tmp_path):
    from tasks.training.loop import fit  # noqa: PLC0415

    model, pieces, cfg = tiny_training(tmp_path, checkpoint_every=3)
    unbroken = fit(model, pieces, cfg, torch.device("cpu"))
    want = {k: v.clone() for k, v in model.state_dict().items()}
    assert pieces.steps_per_epoch > 8  # the kill below is mid-epoch 2

    checkpoint = tmp_path / "last.pt"
    model, pieces, cfg = tiny_training(tmp_path, checkpoint_every=3)
    real_loss, calls = pieces.batch_loss, []

    def killed_at_batch_8_of_epoch_2(*args):
        calls.append(1)
        if len(calls) == pieces.steps_per_epoch + 8:
            raise KeyboardInterrupt
        return real_loss(*args)

    pieces.batch_loss = killed_at_batch_8_of_epoch_2
    with pytest.raises(KeyboardInterrupt):
        fit(model, pieces, cfg, torch.device("cpu"), checkpoint=checkpoint, fingerprint="f")
    state = torch.load(checkpoint, weights_only=True)
    assert state["epoch"] == 1 and state["batches_done"] == 6  # the last multiple of 3 before the kill

    model, pieces, cfg = tiny_training(tmp_path, checkpoint_every=3)
    resumed = fit(model, pieces, cfg, torch.device("cpu"), checkpoint=checkpoint, fingerprint="f")
    got = model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
    for a, b in zip(resumed, unbroken):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6) and a["val_loss"] == b["val_loss"]
