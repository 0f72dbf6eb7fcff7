"""The RNN model, PTB-style batching, the Kneser-Ney baseline, and the training loop (incl. resume)."""

import math
import random
import time

import pytest
import torch

from tasks.lyrics.batching import batchify, get_batch, lm_stream
from tasks.lyrics.kneser_ney import KneserNeyLM
from tasks.lyrics.model import RNNLanguageModel, detach_hidden
from tasks.lyrics.train import train_language_model
from tasks.text.vocab import EOS, Vocab
from tasks.training.language_model import estimate_loss
from tests.helpers import TRAIN_PATTERN, V, pattern_stream, train_cfg

CPU = torch.device("cpu")


# --- model --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_model_shapes(cell, num_layers):
    V, E, H, T, B = 13, 6, 5, 7, 3
    model = RNNLanguageModel(V, E, H, num_layers, cell=cell, dropout=0.1)
    x = torch.randint(0, V, (T, B))
    logits, hidden = model(x)
    assert logits.shape == (T, B, V)
    assert len(hidden) == num_layers  # one state per layer
    for state in hidden:
        assert isinstance(state, tuple) == (cell == "lstm")
        for h in state if cell == "lstm" else (state,):
            assert h.shape == (1, B, H)  # untied: every layer is hidden_size wide
    # the state carries into the next window, detached from the graph
    logits2, hidden2 = model(x[:2], detach_hidden(hidden))
    assert logits2.shape == (2, B, V)
    for state in detach_hidden(hidden):
        for h in state if cell == "lstm" else (state,):
            assert not h.requires_grad


def test_detach_hidden_none():
    assert detach_hidden(None) is None


def test_tie_weights_shares_the_tensor():
    model = RNNLanguageModel(11, 8, 8, 1, cell="gru", tie_weights=True)
    assert model.decoder.weight is model.embedding.weight
    n_tied = sum(p.numel() for p in model.parameters())
    untied = RNNLanguageModel(11, 8, 8, 1, cell="gru", tie_weights=False)
    assert untied.decoder.weight is not untied.embedding.weight
    assert sum(p.numel() for p in untied.parameters()) == n_tied + 11 * 8


def test_tied_model_with_wider_layers_ends_at_the_embedding_size():
    # AWD-LSTM: inner layers wider than the embedding, the top layer feeding the tied decoder
    model = RNNLanguageModel(11, 8, 16, 2, tie_weights=True)
    assert [r.hidden_size for r in model.rnns] == [16, 8]
    out, _ = model.features(torch.randint(0, 11, (5, 2)))
    assert out.shape == (5, 2, 8)
    assert model(torch.randint(0, 11, (5, 2)))[0].shape == (5, 2, 11)


# --- batching -----------------------------------------------------------------------------------


def test_lm_stream_appends_eos_per_line():
    vocab = Vocab(["<pad>", "<unk>", "<bos>", EOS, "天空", "下雨"])
    assert lm_stream([["天空", "下雨"], ["雪"]], vocab).tolist() == [4, 5, 3, 1, 3]


def test_batchify_columns_are_contiguous_slices():
    data = batchify(torch.arange(11), 3)  # ragged tail (9, 10) dropped
    assert data.shape == (3, 3)
    assert data[:, 0].tolist() == [0, 1, 2]
    assert data[:, 1].tolist() == [3, 4, 5]
    assert data[:, 2].tolist() == [6, 7, 8]


def test_get_batch_targets_are_inputs_shifted_by_one():
    data = batchify(torch.arange(40), 4)  # (10, 4)
    x, y = get_batch(data, 0, 3)
    assert x.shape == y.shape == (3, 4)
    assert torch.equal(y[:-1], x[1:])
    assert torch.equal(y, x + 1)  # every column is a contiguous run of the stream
    x, y = get_batch(data, 6, 5)  # last window is shorter: rows 6..8, targets 7..9
    assert x.shape == y.shape == (3, 4)
    assert torch.equal(y, data[7:10])


# --- Kneser-Ney ---------------------------------------------------------------------------------


def kn_data(seed=0):
    rng = random.Random(seed)
    phrases = [[4, 5, 6], [7, 8], [4, 9, 10, 3], [11, 5, 3], [6, 7, 8, 9]]
    ids = []
    for _ in range(300):
        ids += rng.choice(phrases)
    return ids


def reference_kneser_ney(ids: list[int], order: int, vocab_size: int, continuation: bool = True):
    """P(word | context) of interpolated Kneser-Ney written from its definition (Chen & Goodman,
    1999), brute force: every count is a scan of the text. The highest order counts n-grams; each
    lower order counts, for a gram g, the distinct words seen right before it, N1+(. g): that is
    what makes it Kneser-Ney. One absolute discount per order, D = n1 / (n1 + 2 n2) over that
    order's counts; the lowest order is interpolated with the uniform 1 / V.

    continuation=False gives plain interpolated absolute discounting (raw counts at every order)."""
    from functools import cache

    @cache
    def grams(k: int) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(ids[i : i + k]) for i in range(len(ids) - k + 1))

    @cache
    def count(gram: tuple[int, ...]) -> int:
        if len(gram) == order or not continuation:
            return grams(len(gram)).count(gram)
        return len({g[0] for g in grams(len(gram) + 1) if g[1:] == gram})

    @cache
    def discount(k: int) -> float:
        counts = [count(g) for g in set(grams(k))]
        n1, n2 = counts.count(1), counts.count(2)
        return n1 / (n1 + 2 * n2) if n1 + n2 else 0.5

    def p(k: int, h: tuple[int, ...], w: int) -> float:
        if k == 0:
            return 1 / vocab_size
        lower = p(k - 1, h[1:], w)
        counts = [count(h + (v,)) for v in range(vocab_size)]
        total = sum(counts)
        if total == 0:  # unseen context: the lower order alone
            return lower
        d = discount(k)
        return max(counts[w] - d, 0) / total + d * sum(c > 0 for c in counts) / total * lower

    def prob(context: tuple[int, ...], word: int) -> float:
        k = min(order, len(context) + 1)  # a short context (start of the text) uses the orders it has
        return p(k, tuple(context[len(context) - (k - 1) :]) if k > 1 else (), word)

    return prob


KN_CONTEXTS = [(), (4,), (8,), (7,), (4, 5), (7, 8), (6, 7, 8), (12, 13), (13,), (5, 12), (3, 4, 9)]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_matches_a_brute_force_reference(order):
    ids, V = kn_data()[:600], 14  # ids 12 and 13 never occur in training
    lm = KneserNeyLM(order).fit(ids, V)
    reference = reference_kneser_ney(ids, order, V)
    for context in KN_CONTEXTS:
        for w in range(V):
            assert lm.prob(context, w) == pytest.approx(reference(context, w), rel=1e-12, abs=1e-15), (context, w)
    if order > 1:  # the reference tells Kneser-Ney from absolute discounting, so the pin does too
        plain = reference_kneser_ney(ids, order, V, continuation=False)
        assert max(abs(lm.prob(c, w) - plain(c, w)) for c in KN_CONTEXTS for w in range(V)) > 0.01


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_probabilities_sum_to_one(order):
    V = 14  # ids 12 and 13 never occur in training
    lm = KneserNeyLM(order).fit(kn_data(), V)
    for context in [(4, 5), (8,), (), (12, 13), (13,), (5, 12)]:  # seen, unseen and mixed contexts
        total = sum(lm.prob(context, w) for w in range(V))
        assert total == pytest.approx(1.0, abs=1e-9), context
    assert lm.prob((4, 5), 6) > lm.prob((4, 5), 8) > 0
    assert lm.prob((12, 13), 13) > 0  # unseen word in unseen context still gets mass


def test_kneser_ney_perplexity_lower_on_training_text_than_shuffled():
    ids = kn_data()
    lm = KneserNeyLM(3).fit(ids, 14)
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    train_ppl, shuffled_ppl = lm.perplexity(ids), lm.perplexity(shuffled)
    assert 1 < train_ppl < shuffled_ppl
    assert lm.perplexity(kn_data(seed=5)) < shuffled_ppl  # unseen text from the same "language"


# --- training -----------------------------------------------------------------------------------


def new_model(seed=0, cell="lstm", dropout=0.0):
    torch.manual_seed(seed)
    return RNNLanguageModel(V, 16, 16, 1, cell=cell, dropout=dropout, tie_weights=True)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_training_loss_falls(tmp_path, cell):
    train = pattern_stream(TRAIN_PATTERN, 30, 4)
    val = pattern_stream(TRAIN_PATTERN, 6, 2)
    model = new_model(cell=cell)
    history: list[dict] = []
    returned = train_language_model(model, train, val, train_cfg(tmp_path, epochs=4), CPU, history.append)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert returned == history  # one dict per epoch, the same ones that are returned
    assert returned.stopped_by == "epochs"  # all 4 ran
    assert set(history[0]) >= {"epoch", "train_loss", "val_loss", "train_ppl", "val_ppl", "lr"}
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert history[0]["train_ppl"] == pytest.approx(math.exp(history[0]["train_loss"]))


def test_best_weights_are_restored(tmp_path):
    # validation text follows another pattern: the better the model learns train, the worse val gets
    train = pattern_stream(TRAIN_PATTERN, 30, 4)
    val = pattern_stream(list(reversed(TRAIN_PATTERN)), 6, 2)
    model = new_model(seed=1)
    history = train_language_model(model, train, val, train_cfg(tmp_path, epochs=5), CPU)
    best = min(history, key=lambda r: r["val_loss"])
    assert best["epoch"] < history[-1]["epoch"], "setup should make the last epoch not the best"
    assert estimate_loss(model, val, 6, CPU) == pytest.approx(best["val_loss"], rel=1e-5)


def test_early_stopping(tmp_path):
    train = pattern_stream(TRAIN_PATTERN, 30, 4)
    val = pattern_stream(list(reversed(TRAIN_PATTERN)), 6, 2)
    history = train_language_model(
        new_model(seed=1), train, val, train_cfg(tmp_path, epochs=30, early_stopping_patience=2), CPU
    )
    assert len(history) < 30 and history.stopped_by == "early_stopping"
    best_epoch = min(history, key=lambda r: r["val_loss"])["epoch"]
    assert history[-1]["epoch"] == best_epoch + 2


class Clock:
    """A stand-in for the loop's `time` module: monotonic() is 0 at the first reading, then an hour
    on (a budget of any minutes has run out by the end of the first epoch)."""

    def __init__(self):
        self.readings = 0
        self.perf_counter = time.perf_counter

    def monotonic(self) -> float:
        self.readings += 1
        return 0.0 if self.readings == 1 else 3600.0


def test_max_minutes_stops_only_when_set(tmp_path, monkeypatch):
    from tasks.training import loop

    train = pattern_stream(TRAIN_PATTERN, 20, 4)
    val = pattern_stream(TRAIN_PATTERN, 4, 2)
    monkeypatch.setattr(loop, "time", Clock())
    cut = train_language_model(new_model(), train, val, train_cfg(tmp_path, epochs=4, max_minutes=1), CPU)
    assert len(cut) == 1 and cut.stopped_by == "max_minutes"
    monkeypatch.setattr(loop, "time", Clock())
    off = train_language_model(new_model(), train, val, train_cfg(tmp_path, epochs=4, max_minutes=None), CPU)
    assert len(off) == 4 and off.stopped_by == "epochs"  # an hour passed, and no budget was set
    assert [r["val_loss"] for r in off[:1]] == [r["val_loss"] for r in cut]  # the budget changes nothing else


COMPARED = ("epoch", "train_loss", "val_loss", "lr")


def test_resume_from_checkpoint(tmp_path):
    """With dropout on, so a resumed run must restore the RNG to draw the masks an uninterrupted
    run draws: it ends with the uninterrupted run's weights exactly."""
    train = pattern_stream(TRAIN_PATTERN, 20, 4)
    val = pattern_stream(TRAIN_PATTERN, 4, 2)
    checkpoint = tmp_path / "ckpt" / "last.pt"

    # a run "killed" after 2 epochs leaves its checkpoint behind
    first = train_language_model(
        new_model(seed=0, dropout=0.5),
        train,
        val,
        train_cfg(tmp_path, epochs=2),
        CPU,
        checkpoint=checkpoint,
        fingerprint="fp-1",
    )
    assert checkpoint.exists()
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["epoch"] == 2 and saved["fingerprint"] == "fp-1"

    # a fresh process: new model (other init, other RNG state), same checkpoint and fingerprint ->
    # resumes at epoch 3
    seen: list[dict] = []
    resumed_model = new_model(seed=99, dropout=0.5)
    resumed = train_language_model(
        resumed_model,
        train,
        val,
        train_cfg(tmp_path, epochs=4),
        CPU,
        seen.append,
        checkpoint=checkpoint,
        fingerprint="fp-1",
    )
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    assert [r["epoch"] for r in seen] == [3, 4]  # only the new epochs are reported
    assert resumed[:2] == first

    # and it continues exactly where an uninterrupted run would be
    straight_model = new_model(seed=0, dropout=0.5)
    straight = train_language_model(straight_model, train, val, train_cfg(tmp_path, epochs=4), CPU)
    for got, want in zip(resumed, straight):
        for key in COMPARED:
            assert got[key] == want[key], (got["epoch"], key)
    want = straight_model.state_dict()
    for name, tensor in resumed_model.state_dict().items():
        assert torch.equal(tensor, want[name]), name


def test_checkpoint_with_other_fingerprint_is_ignored(tmp_path):
    train = pattern_stream(TRAIN_PATTERN, 20, 4)
    val = pattern_stream(TRAIN_PATTERN, 4, 2)
    checkpoint = tmp_path / "ckpt" / "last.pt"
    train_language_model(
        new_model(), train, val, train_cfg(tmp_path, epochs=2), CPU, checkpoint=checkpoint, fingerprint="old-params"
    )
    seen: list[dict] = []
    history = train_language_model(
        new_model(),
        train,
        val,
        train_cfg(tmp_path, epochs=3),
        CPU,
        seen.append,
        checkpoint=checkpoint,
        fingerprint="new-params",
    )
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["epoch"] for r in seen] == [1, 2, 3]
    assert torch.load(checkpoint, weights_only=True)["fingerprint"] == "new-params"


def test_cosine_scheduler_warms_up_then_decays(tmp_path):
    train = pattern_stream(TRAIN_PATTERN, 20, 4)
    val = pattern_stream(TRAIN_PATTERN, 4, 2)
    history = train_language_model(
        new_model(), train, val, train_cfg(tmp_path, epochs=4, scheduler="cosine", warmup_epochs=1), CPU
    )
    lrs = [r["lr"] for r in history]
    assert lrs[0] == pytest.approx(0.02, rel=1e-6)  # end of warmup
    assert lrs[1] > lrs[2] > lrs[3]
