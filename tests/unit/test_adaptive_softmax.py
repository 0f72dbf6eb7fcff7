"""The adaptive softmax output of the language model: shapes, training, perplexity that means the
same as the full softmax's, generation, the MLflow pyfunc, and its params checks."""

import math

import pytest
import torch
from pydantic import ValidationError

from tasks.common.errors import PipelineError
from tasks.common.params import section_from_yaml
from tasks.lyrics.batching import batchify, lm_stream
from tasks.lyrics.model import RNNLanguageModel
from tasks.lyrics.neural_cache import perplexities
from tasks.lyrics.params import Model
from tasks.lyrics.train import train_language_model
from tasks.text.vocab import tokens_by_split
from tasks.training.language_model import estimate_loss, output_args
from tests.helpers import TRAIN_PATTERN, pattern_stream, tiny_lyrics_run, train_cfg

CPU = torch.device("cpu")
V = 12


def adaptive_model(seed=0, cutoffs=(6,)):
    torch.manual_seed(seed)
    return RNNLanguageModel(V, 16, 16, 1, cell="lstm", output="adaptive", adaptive_cutoffs=list(cutoffs))


def softmax_model(seed=0):
    torch.manual_seed(seed)
    return RNNLanguageModel(V, 16, 16, 1, cell="lstm")


def test_shapes_and_scores_are_log_probabilities():
    T, B = 7, 3
    model = adaptive_model(cutoffs=(4, 8)).eval()
    x, y = torch.randint(0, V, (T, B)), torch.randint(0, V, (T, B))
    scores, hidden = model(x)
    assert scores.shape == (T, B, V)
    assert torch.allclose(scores.exp().sum(-1), torch.ones(T, B), atol=1e-5)  # a distribution per position
    assert hidden[0][0].shape == (1, B, 16)  # layer 0's h
    loss, _ = model(x, None, y)
    assert loss.dim() == 0
    # the training path (targets given) and the full log-probabilities agree on the NLL
    assert loss.item() == pytest.approx(-scores.gather(-1, y[..., None]).mean().item(), rel=1e-5)


@pytest.mark.parametrize("make", [softmax_model, adaptive_model], ids=["softmax", "adaptive"])
def test_perplexity_is_exp_mean_nll_of_the_full_distribution(make):
    """The evaluate stage's perplexity (targets path, state carried over chunks) equals exp(mean
    NLL) computed by hand from the model's full (T, B, V) scores over the same stream, for both
    output kinds."""
    model = make().eval()
    stream = torch.tensor(TRAIN_PATTERN * 5)
    with torch.no_grad():
        scores, _ = model(stream[:-1].view(-1, 1))  # (N-1, 1, V)
    nll = -torch.log_softmax(scores[:, 0], -1).gather(1, stream[1:, None]).mean().item()
    assert perplexities(model, stream, None, steps=5) == pytest.approx((math.exp(nll), math.exp(nll)), rel=1e-4)
    assert estimate_loss(model, batchify(stream, 1), 5, CPU) == pytest.approx(nll, rel=1e-4)


def test_training_loss_falls(tmp_path):
    train = pattern_stream(TRAIN_PATTERN, 30, 4)
    val = pattern_stream(TRAIN_PATTERN, 6, 2)
    history = train_language_model(adaptive_model(), train, val, train_cfg(tmp_path, epochs=4), CPU)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_params_reject_tied_adaptive_and_bad_cutoffs():
    with pytest.raises(ValidationError, match="tie_weights: false"):
        section_from_yaml(Model, "lyrics.model", output="adaptive", tie_weights=True)
    with pytest.raises(ValidationError, match="strictly increasing"):
        section_from_yaml(Model, "lyrics.model", output="adaptive", tie_weights=False, adaptive_cutoffs=[100, 100])
    with pytest.raises(ValidationError, match="strictly increasing"):
        section_from_yaml(Model, "lyrics.model", output="adaptive", tie_weights=False, adaptive_cutoffs=[0, 10])
    section_from_yaml(Model, "lyrics.model", output="adaptive", tie_weights=False, adaptive_cutoffs=[100, 1000])
    with pytest.raises(ValueError, match="adaptive"):
        RNNLanguageModel(V, 16, 16, 1, tie_weights=True, output="adaptive", adaptive_cutoffs=[6])


def test_cutoffs_beyond_the_vocabulary_are_dropped_or_rejected():
    cfg = section_from_yaml(Model, "lyrics.model", output="adaptive", tie_weights=False, adaptive_cutoffs=[2000, 10000])
    assert output_args(cfg, 5700) == {"adaptive_cutoffs": [2000]}
    assert output_args(cfg, 20000) == {"adaptive_cutoffs": [2000, 10000]}
    with pytest.raises(PipelineError, match="adaptive_cutoffs"):
        output_args(cfg, 1500)
    assert output_args(section_from_yaml(Model, "lyrics.model"), 5700) == {}


def test_trained_adaptive_checkpoint_evaluates_generates_and_serves(tmp_path):
    from tasks import clean, evaluate, split, tokenize, train, vocab
    from tasks.serving.lyrics_generator import generate_text, load_checkpoint
    from tasks.serving.lyrics_pyfunc import LyricsGenerator

    with tiny_lyrics_run(
        tmp_path,
        (clean, tokenize, split, vocab, train, evaluate),
        model_updates={"output": "adaptive", "tie_weights": False, "adaptive_cutoffs": [8, 16, 1000]},
        epochs=2,
    ) as (params, results):
        model_pt = f"{params.lyrics.train.output_dir}/model.pt"
        model, vocab_, tokenizer = load_checkpoint(model_pt)
        test = lm_stream(tokens_by_split(params.lyrics.split.output)["test"], vocab_)  # (N,)
    assert model.output == "adaptive"
    assert model.adaptive.cutoffs[:-1] == [8, 16]  # 1000 is beyond the tiny vocabulary
    # The reported perplexity is the saved model's full distribution over the test stream...
    metrics = results["evaluate"]
    with torch.no_grad():
        scores, _ = model(test[:-1].view(-1, 1))  # (N-1, 1, V) log-probabilities
    nll = -scores[:, 0].gather(1, test[1:, None]).mean().item()
    assert metrics["test_perplexity"] == pytest.approx(math.exp(nll), rel=1e-4)
    # ...and training lowered it: well below the same model at its initial weights, and below the
    # uniform guess over the vocabulary
    torch.manual_seed(params.lyrics.train.seed)  # what the train stage seeds before building the model
    untrained = RNNLanguageModel(**torch.load(model_pt, weights_only=True)["model_args"])
    untrained_ppl = perplexities(untrained, test, None)[0]
    assert metrics["test_perplexity"] < 0.8 * min(untrained_ppl, len(vocab_))
    text = generate_text(model, vocab_, tokenizer, "天空", 8, seed=3)
    assert text.startswith("天空") and len(text) > 2
    assert text == generate_text(model, vocab_, tokenizer, "天空", 8, seed=3)

    served = LyricsGenerator()
    served.load_context(type("Context", (), {"artifacts": {"checkpoint": model_pt}})())
    import pandas as pd

    out = served.predict(None, pd.DataFrame({"start": ["天空"]}), params={"length": 5, "seed": 3})
    assert out["lyrics"].iloc[0].startswith("天空")
