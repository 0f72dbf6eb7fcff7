"""AWD-LSTM regularisation and ULMFiT's optimiser settings: dropout masks shared across time,
whole-word embedding dropout, DropConnect on the recurrent weights, layer groups for discriminative
learning rates, the slanted triangular schedule, and loading weights saved by the stacked model."""

import pytest
import torch
from torch import nn

from tasks.common.errors import PipelineError
from tasks.lyrics.model import RNNLanguageModel, embedding_dropout, locked_dropout, upgrade_state_dict
from tasks.training.loop import STLR_RATIO, make_scheduler, param_groups
from tests.helpers import train_cfg


def test_locked_dropout_uses_one_mask_for_every_time_step():
    torch.manual_seed(0)
    x = torch.ones(9, 4, 32)  # (T, B, H)
    out = locked_dropout(x, 0.5, training=True)
    assert out.shape == x.shape
    assert torch.equal(out, out[:1].expand_as(out))  # the same units dropped at every step
    assert (out == 0).any() and torch.allclose(out[out != 0], torch.tensor(2.0))  # kept units scaled by 1/(1-p)
    assert not torch.equal(out[0, 0], out[0, 1])  # but each sequence has its own mask
    assert torch.equal(locked_dropout(x, 0.5, training=False), x)


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(1)
    emb = nn.Embedding(50, 8)
    x = torch.arange(50).repeat(6, 1)  # every word at 6 positions (T=6, B=50)
    out = embedding_dropout(emb, x, 0.5, training=True)  # (6, 50, 8)
    dropped = (out == 0).all(-1)  # (T, B)
    assert dropped.any() and not dropped.all()
    assert torch.equal(dropped, dropped[:1].expand_as(dropped))  # a dropped word is zero everywhere it occurs
    kept = ~dropped[0]
    assert torch.allclose(out[0, kept], emb.weight[kept] * 2)
    assert torch.equal(embedding_dropout(emb, x, 0.5, training=False), emb(x))


def test_weight_dropout_drops_recurrent_weights_in_training_only():
    torch.manual_seed(2)
    model = RNNLanguageModel(20, 8, 8, 2, weight_dropout=0.5)
    before = model.rnns[0].weight_hh_l0.detach().clone()
    x = torch.randint(0, 20, (6, 3))
    model.train()
    a, _ = model.features(x)
    b, _ = model.features(x)
    assert not torch.allclose(a, b)  # a fresh DropConnect mask per call
    assert torch.equal(model.rnns[0].weight_hh_l0, before)  # the parameter itself is never modified
    loss, _ = model(x, None, x)
    loss.backward()
    assert model.rnns[0].weight_hh_l0.grad.abs().sum() > 0  # gradients reach the raw weights
    model.eval()
    assert torch.equal(model.features(x)[0], model.features(x)[0])  # deterministic at inference


def test_layer_groups_cover_every_parameter_once_bottom_to_top():
    for tied in (True, False):
        model = RNNLanguageModel(30, 8, 12, 3, tie_weights=tied)
        groups = model.layer_groups()
        ids = [id(p) for g in groups for p in g]
        assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
        if tied:  # the tied matrix is the output layer too: it trains at the top group's rate
            assert len(groups) == 4 and any(p is model.embedding.weight for p in groups[-1])
        else:  # embedding, three layers, the decoder
            assert len(groups) == 5 and groups[0] == [model.embedding.weight]


def test_discriminative_learning_rates_fall_by_the_decay_per_layer_below_the_top():
    model = RNNLanguageModel(30, 8, 8, 2, tie_weights=True)
    groups = param_groups(model, lr=0.01, decay=2.0)  # two layers, then the (tied) output layer
    assert [g["lr"] for g in groups] == pytest.approx([0.01 / 4, 0.01 / 2, 0.01])
    assert len(param_groups(model, 0.01, 1.0)) == 1
    with pytest.raises(PipelineError, match="layer_lr_decay"):
        param_groups(nn.Linear(2, 2), 0.01, 2.0)


def test_slanted_triangular_rises_fast_then_falls_slowly_to_lr_over_32(tmp_path):
    cfg = train_cfg(tmp_path, scheduler="slanted_triangular", epochs=10, warmup_epochs=1, lr=0.032)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(opt, cfg, steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.032 / STLR_RATIO)
    assert max(lrs) == pytest.approx(0.032) and lrs.index(max(lrs)) == 10  # the peak after warmup_epochs
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # rising
    assert all(a > b for a, b in zip(lrs[10:99], lrs[11:100]))  # then falling
    assert sched.lr_lambdas[0](100) == pytest.approx(1 / STLR_RATIO)  # back at lr/32 when the epochs end


def test_weights_of_the_stacked_model_load_into_the_per_layer_one():
    torch.manual_seed(3)
    stacked = nn.LSTM(8, 8, 2)  # what `rnn` was before the layers became separate modules
    old = {f"rnn.{k}": v for k, v in stacked.state_dict().items()}
    model = RNNLanguageModel(20, 8, 8, 2, tie_weights=True)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("rnns.")}
    model.load_state_dict({**state, **upgrade_state_dict(old)})
    x = torch.randn(5, 3, 8)
    expected, _ = stacked.eval()(x)
    model.eval()
    out = x
    for rnn in model.rnns:
        out, _ = rnn(out)
    assert torch.allclose(out, expected, atol=1e-6)
