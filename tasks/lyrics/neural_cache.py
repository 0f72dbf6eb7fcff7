"""A continuous cache for the language model (Grave, Joulin & Usunier, 2017, "Improving Neural
Language Models with a Continuous Cache").

Songs repeat themselves: a chorus comes back several times, and about half the held-out tokens of
the Jay Chou corpus sit in a line that already occurred earlier in the same split. The LSTM's
state carries a few dozen tokens; the cache remembers the last `window` positions as (top-layer
output h_i, the token that followed it) and, at step t, mixes in the tokens that followed states
like the current one:

    p(w) = (1 - lam) * p_model(w) + lam * sum_i softmax_i(theta * h_t . h_i) * [x_{i+1} = w]

No weights are trained: `fit_cache` picks (theta, lam, window) on the validation stream, lam = 0
(cache off) included, so the cache is used only when it helps there. It applies when the model
scores given text (perplexity). Generation does not use it: a cache filled with the model's own
samples hands them back with a weight fitted for real text, and the lyrics loop (tried: a start
word followed by runs of empty lines).
"""

import itertools
import logging
import math

import torch

from tasks.common.progress import Tracker
from tasks.lyrics.model import RNNLanguageModel

log = logging.getLogger(__name__)

THETAS = (0.1, 0.3, 1.0, 3.0)  # flatness of the match over cached states
LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
WINDOWS = (100, 200, 500, 1000)  # positions remembered: about 10 to 100 lines of lyrics
CHUNK = 512  # query rows scored at a time (memory: CHUNK x (window + CHUNK))


@torch.no_grad()
def stream_states(
    model: RNNLanguageModel, stream: torch.Tensor, steps: int = 1024, label: str = "scoring"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-layer outputs and the model's log-probability of each next token, state carried along.

    stream: (N,) ids. Returns h (N-1, H): the output after reading stream[t]; logp (N-1,): log
    p_model(stream[t+1] | stream[..t]). `label` names the pass in the progress display."""
    model.eval()
    device = next(model.parameters()).device
    x = stream.view(-1, 1)  # (N, 1)
    hidden, outs, logps = None, [], []
    with Tracker(x.size(0) - 1, label, "tokens", log) as done:
        for i in range(0, x.size(0) - 1, steps):
            xi = x[i : min(i + steps, x.size(0) - 1)].to(device)  # (T, 1)
            yi = x[i + 1 : i + 1 + xi.size(0)].to(device)  # (T, 1)
            out, hidden = model.features(xi, hidden)  # (T, 1, H)
            logps.append(model.target_log_probs(out, yi)[:, 0].float().cpu())  # (T,)
            outs.append(out[:, 0].float().cpu())  # (T, H): .cpu() syncs, so the count is of finished work
            done.update(xi.size(0))
    return torch.cat(outs), torch.cat(logps)


def cache_probs(h: torch.Tensor, targets: torch.Tensor, theta: float, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every step t: the cache's probability of targets[t] from the `window` steps before it.

    h: (N, H) outputs, targets: (N,) next tokens. Returns (p_cache (N,), has_cache (N,) bool; False
    at t = 0, where the cache is empty and the model alone predicts)."""
    n = h.size(0)
    p = torch.zeros(n)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        lo = max(0, start - window)
        scores = theta * h[start:stop] @ h[lo:stop].T  # (C, K): queries x cached keys
        t = torch.arange(start, stop)[:, None]
        i = torch.arange(lo, stop)[None, :]
        visible = (i < t) & (i >= t - window)  # (C, K): strictly earlier, in window
        weights = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=1).nan_to_num(0.0)
        same = targets[lo:stop][None, :] == targets[start:stop][:, None]  # (C, K): key's next token is the target
        p[start:stop] = (weights * same).sum(1)
    has_cache = torch.arange(n) > 0
    return p, has_cache


def mixed_nll(logp_model: torch.Tensor, p_cache: torch.Tensor, has_cache: torch.Tensor, lam: float) -> float:
    """Mean NLL of the interpolation; steps with an empty cache use the model alone."""
    p = logp_model.exp()
    mixed = torch.where(has_cache, (1 - lam) * p + lam * p_cache, p)
    return float(-mixed.clamp_min(1e-30).log().mean())


def fit_cache(model: RNNLanguageModel, val_stream: torch.Tensor) -> dict:
    """Grid-search (theta, lam, window) on the validation stream; returns them with the validation
    perplexity before and after. lam = 0 is in the grid: a cache that does not help stays off."""
    h, logp = stream_states(model, val_stream, label="cache fit: validation")
    targets = val_stream[1:]
    plain = float(-logp.mean())
    best = {"theta": 0.0, "lam": 0.0, "window": 0, "nll": plain}
    with Tracker(len(THETAS) * len(WINDOWS), "cache fit: grid", "settings", log) as done:
        for theta, window in itertools.product(THETAS, WINDOWS):
            p_cache, has_cache = cache_probs(h, targets, theta, window)
            for lam in LAMBDAS[1:]:
                nll = mixed_nll(logp, p_cache, has_cache, lam)
                if nll < best["nll"]:
                    best = {"theta": theta, "lam": lam, "window": window, "nll": nll}
            done.update()
    return {
        "theta": best["theta"],
        "lam": best["lam"],
        "window": best["window"],
        "val_ppl_without": math.exp(plain),
        "val_ppl_with": math.exp(best["nll"]),
    }


def perplexities(
    model: RNNLanguageModel, stream: torch.Tensor, cache: dict | None, steps: int = 1024
) -> tuple[float, float]:
    """exp(mean NLL) of stream[1:], each target given all the tokens before it (the targets the
    n-gram baseline scores): (the model alone, the model with its fitted cache). Both are the same
    when `cache` is None or its lam is 0. `steps`: tokens run at a time, the state carried across."""
    h, logp = stream_states(model, stream, steps, label="perplexity")
    plain = math.exp(float(-logp.mean()))
    if not cache or cache["lam"] == 0:
        return plain, plain
    p_cache, has_cache = cache_probs(h, stream[1:], cache["theta"], cache["window"])
    return plain, math.exp(mixed_nll(logp, p_cache, has_cache, cache["lam"]))
