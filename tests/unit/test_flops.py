"""The analytic FLOP counts match what torch's FlopCounterMode counts on real forward passes."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import flops
from tasks.lyrics.model import RNNLanguageModel
from tasks.reviews.model import RNNClassifier

# torch warns about Intel-GPU TF32 whenever the oneDNN flags are switched; irrelevant here
pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")


def counted(fn) -> int:
    # oneDNN's fused CPU LSTM kernel is invisible to the counter; without it the LSTM runs as the
    # matmuls that are counted (the same multiplies the fused kernel does)
    with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_rnn_flops_per_token(cell, num_layers, bidirectional):
    T, B, E, H = 5, 3, 6, 7
    rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](E, H, num_layers, bidirectional=bidirectional)
    x = torch.randn(T, B, E)
    assert counted(lambda: rnn(x)) == T * B * flops.rnn_flops(cell, E, H, num_layers, bidirectional)


def test_rnn_flops_by_hand():
    # one LSTM layer, in 3, hidden 2: 2 * (3 + 2) * 4 gates * 2 = 80
    assert flops.rnn_flops("lstm", 3, 2) == 80
    assert flops.training_flops(80) == 240


@pytest.mark.parametrize("output", ["softmax", "adaptive"])
def test_language_model_forward_flops(output):
    T, B = 6, 4
    args = {
        "vocab_size": 50,
        "embedding_size": 16,
        "hidden_size": 16,
        "num_layers": 2,
        "cell": "lstm",
        "output": output,
        "adaptive_cutoffs": [10, 30],
    }
    model = RNNLanguageModel(**args).eval()
    x, y = torch.randint(0, 50, (T, B)), torch.randint(0, 50, (T, B))
    # no targets: full scores over the vocabulary (every tail cluster for every token)
    assert counted(lambda: model(x)) == pytest.approx(T * B * flops.lm_forward_flops(args))
    if output == "adaptive":
        # with targets a tail cluster is computed only for the tokens whose target is in it
        fractions = flops.tail_fractions(y, [10, 30], 50)
        assert counted(lambda: model(x, None, y)) == pytest.approx(T * B * flops.lm_forward_flops(args, fractions))
        assert flops.lm_forward_flops(args, fractions) < flops.lm_forward_flops(args)


@pytest.mark.parametrize("tie_weights", [True, False])
def test_language_model_flops_with_inner_layers_wider_than_the_embedding(tie_weights):
    # AWD-LSTM shape, as pretrain.model: tied, the top layer outputs embedding_size (8) while the
    # inner layers are hidden_size (12) wide; the dropouts are matmul-free
    T, B = 5, 3
    args = {
        "vocab_size": 30,
        "embedding_size": 8,
        "hidden_size": 12,
        "num_layers": 3,
        "cell": "lstm",
        "tie_weights": tie_weights,
        "dropout": 0.1,
        "embedding_dropout": 0.1,
        "weight_dropout": 0.2,
    }
    model = RNNLanguageModel(**args).eval()
    x = torch.randint(0, 30, (T, B))
    assert counted(lambda: model(x)) == pytest.approx(T * B * flops.lm_forward_flops(args))
    top = 8 if tie_weights else 12
    by_hand = flops.rnn_flops("lstm", 8, 12) + flops.rnn_flops("lstm", 12, 12) + flops.rnn_flops("lstm", 12, top)
    assert flops.lm_forward_flops(args) == by_hand + 2 * top * 30


def test_classifier_forward_flops_counts_the_rnn_and_attention():
    B, T = 3, 9
    args = {
        "vocab_size": 40,
        "num_classes": 2,
        "embedding_size": 8,
        "hidden_size": 6,
        "cell": "gru",
        "bidirectional": True,
        "pooling": "attention",
    }
    model = RNNClassifier(**args).eval()
    x, lengths = torch.randint(1, 40, (B, T)), torch.full((B,), T)
    head = 2 * 12 * 2 * B  # the per-review output layer, left out of the per-token figure
    assert counted(lambda: model(x, lengths)) == B * T * flops.classifier_forward_flops(args) + head


def test_matmul_rate_is_measured():
    rate = flops.matmul_flops_per_s(n=64, reps=2, repeats=2)
    assert 1e6 < rate < 1e15
