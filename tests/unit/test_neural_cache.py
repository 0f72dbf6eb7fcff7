"""The continuous cache of the language model and the unigram cache of the n-gram baseline:
probabilities against brute force, the fit on validation, and perplexity with / without."""

import itertools
import math
from collections import Counter

import pytest
import torch

from tasks.lyrics.kneser_ney import CACHE_LAMBDAS, CACHE_WINDOWS, KneserNeyLM, fit_unigram_cache, unigram_cache_probs
from tasks.lyrics.kneser_ney import perplexities as kn_perplexities
from tasks.lyrics.model import RNNLanguageModel
from tasks.lyrics.neural_cache import LAMBDAS, THETAS, WINDOWS, cache_probs, fit_cache, perplexities, stream_states
from tasks.training.language_model import estimate_loss

V = 40


def model_of(output="softmax", seed=0):
    torch.manual_seed(seed)
    if output == "adaptive":
        return RNNLanguageModel(V, 16, 16, 1, cell="lstm", output="adaptive", adaptive_cutoffs=[10]).eval()
    return RNNLanguageModel(V, 16, 16, 2, cell="lstm", tie_weights=True).eval()


def repeating_stream(seed=0, block=30, times=6):
    """A random 'chorus' of `block` tokens sung `times` times: what the cache is for."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, V, (block,), generator=g).repeat(times)


def test_cache_probs_match_a_brute_force_loop():
    g = torch.Generator().manual_seed(1)
    h, targets = torch.randn(700, 8, generator=g), torch.randint(0, 5, (700,), generator=g)
    theta, window = 0.5, 37
    got, has_cache = cache_probs(h, targets, theta, window)
    for t in (0, 1, 36, 37, 38, 511, 512, 513, 699):  # chunk edges (512) and window edges
        keys = range(max(0, t - window), t)
        if not keys:
            assert not has_cache[t] and got[t] == 0
            continue
        w = torch.softmax(torch.stack([theta * h[t] @ h[i] for i in keys]), 0)
        want = sum(w[j] for j, i in enumerate(keys) if targets[i] == targets[t])
        assert has_cache[t] and got[t].item() == pytest.approx(float(want), abs=1e-5)


@pytest.mark.parametrize("output", ["softmax", "adaptive"])
def test_without_cache_it_is_the_training_loss_perplexity(output):
    """The model alone scores exactly what the training loop's validation loss scores."""
    model, stream = model_of(output), repeating_stream()
    plain = math.exp(estimate_loss(model, stream.view(-1, 1), 7, torch.device("cpu")))
    assert perplexities(model, stream, None) == pytest.approx((plain, plain), rel=1e-4)
    assert perplexities(model, stream, {"theta": 1.0, "lam": 0.0, "window": 50}) == pytest.approx(
        (plain, plain), rel=1e-4
    )


def test_states_carry_over_chunks():
    model, stream = model_of(), repeating_stream(times=10)
    h_small, logp_small = stream_states(model, stream, steps=13)
    h_big, logp_big = stream_states(model, stream, steps=1000)
    assert h_small.shape == (len(stream) - 1, 16) and logp_small.shape == (len(stream) - 1,)
    assert torch.allclose(h_small, h_big, atol=1e-5) and torch.allclose(logp_small, logp_big, atol=1e-5)


def test_fit_turns_the_cache_on_for_repeated_text_and_it_lowers_perplexity():
    model = model_of()
    val, test = repeating_stream(seed=2), repeating_stream(seed=3)  # different choruses: nothing shared
    cache = fit_cache(model, val)
    assert cache["lam"] > 0 and cache["val_ppl_with"] < cache["val_ppl_without"]
    # An untrained model's states say little, so here the cache is near a unigram cache of the window
    alone, with_cache = perplexities(model, test, cache)
    assert with_cache < 0.9 * alone


def test_fit_leaves_the_cache_off_when_nothing_repeats():
    model = model_of()
    stream = torch.arange(4, V)  # every target is a token not seen before: the cache can only hurt
    cache = fit_cache(model, stream)
    assert cache["lam"] == 0
    alone, with_cache = perplexities(model, stream, cache)
    assert with_cache == alone


def test_unigram_cache_counts_the_window_before_each_token():
    ids = [1, 2, 1, 3, 1, 1, 2, 4]
    window = 3
    got = unigram_cache_probs(ids, window)
    for i in range(1, len(ids)):
        recent = ids[max(0, i - window) : i]
        assert got[i - 1] == pytest.approx(Counter(recent)[ids[i]] / len(recent))


def test_fit_cache_picks_the_grid_point_with_the_lowest_validation_perplexity():
    """fit_cache against a search written out here: every (theta, window, lam) of the grid, lam = 0
    (off) included, mixed by hand; the pick is the minimum and its reported perplexities are right."""
    model, val = model_of(), repeating_stream(seed=2)
    h, logp = stream_states(model, val)
    p_model = logp.exp().double()
    scores = {}
    for theta, window, lam in itertools.product(THETAS, WINDOWS, LAMBDAS):
        p_cache, _ = cache_probs(h, val[1:], theta, window)
        mixed = torch.cat([p_model[:1], (1 - lam) * p_model[1:] + lam * p_cache[1:].double()])  # step 0: no cache
        scores[theta, window, lam] = math.exp(-mixed.log().mean().item())
    cache = fit_cache(model, val)
    best = min(scores.values())
    assert cache["lam"] > 0 and scores[cache["theta"], cache["window"], cache["lam"]] == pytest.approx(best, rel=1e-6)
    assert cache["val_ppl_with"] == pytest.approx(best, rel=1e-6)
    assert cache["val_ppl_without"] == pytest.approx(scores[THETAS[0], WINDOWS[0], 0.0], rel=1e-6)


def test_kneser_ney_with_a_fitted_cache_beats_it_without_on_repeated_text():
    train = torch.randint(4, V, (2000,), generator=torch.Generator().manual_seed(5)).tolist()
    kn = KneserNeyLM(3).fit(train, V)
    val, test = repeating_stream(seed=6).tolist(), repeating_stream(seed=7).tolist()
    cache = fit_unigram_cache(kn, val)
    # The pick minimises validation perplexity over the whole grid, each point computed by hand
    # (the share of the target among the `window` tokens before it, mixed with weight lam).
    p_kn = [kn.prob(tuple(val[max(0, i - 2) : i]), val[i]) for i in range(1, len(val))]

    def val_ppl(lam: float, window: int) -> float:
        recent = [Counter(val[max(0, i - window) : i])[val[i]] / min(i, window) for i in range(1, len(val))]
        return math.exp(-sum(math.log((1 - lam) * p + lam * c) for p, c in zip(p_kn, recent)) / len(p_kn))

    grid = {(lam, w): val_ppl(lam, w) for lam in CACHE_LAMBDAS for w in CACHE_WINDOWS}
    assert val_ppl(cache["lam"], cache["window"]) == pytest.approx(min(grid.values()), rel=1e-9)
    assert val_ppl(cache["lam"], cache["window"]) < kn.perplexity(val)  # the cache helps on repeated text
    alone, with_cache = kn_perplexities(kn, test, cache)
    assert alone == pytest.approx(kn.perplexity(test))
    assert math.isfinite(with_cache) and with_cache < alone
