"""Interpolated Kneser-Ney n-gram language model: the classic baseline the RNN must beat.

Written out here because the library candidates do not fit: kenlm's estimator is a separate C++
binary (lmplz) that pip does not install, and nltk.lm's KneserNeyInterpolated rescans its counts
for every scored token (see the README's limits for the measured cost). Counting is one pass over
the training stream; scoring is a few dict lookups per token.
"""

import math
from collections import Counter, defaultdict

from tasks.lyrics.bits_per_char import UNK_CHAR_BITS


class KneserNeyLM:
    """P(w | h) for ids, with one absolute discount per order estimated as n1 / (n1 + 2 n2)."""

    def __init__(self, order: int = 3):
        self.order = order

    def fit(self, ids: list[int], vocab_size: int) -> "KneserNeyLM":
        self.vocab_size = vocab_size
        n = self.order
        highest = Counter(tuple(ids[i : i + n]) for i in range(len(ids) - n + 1))
        # counts[k][ngram]: raw counts for the highest order, continuation counts (number of
        # distinct left extensions) for every lower order, as Kneser-Ney prescribes.
        counts: list[Counter] = [Counter() for _ in range(n + 1)]
        counts[n] = highest
        for k in range(n, 1, -1):
            for gram in counts[k]:
                counts[k - 1][gram[1:]] += 1
        self.counts = counts
        self.context_total = [defaultdict(int) for _ in range(n + 1)]  # sum over w of counts[k][h + (w,)]
        self.context_types = [defaultdict(int) for _ in range(n + 1)]  # number of w with count > 0
        for k in range(1, n + 1):
            for gram, c in counts[k].items():
                self.context_total[k][gram[:-1]] += c
                self.context_types[k][gram[:-1]] += 1
        self.discount = [0.0] * (n + 1)
        for k in range(1, n + 1):
            freq = Counter(c for c in counts[k].values() if c <= 2)
            n1, n2 = freq[1], freq[2]
            self.discount[k] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
        return self

    def prob(self, context: tuple[int, ...], word: int) -> float:
        """Interpolated probability, recursing from the unigram level (uniform floor) upwards."""
        p = 1.0 / self.vocab_size
        context = context[-(self.order - 1) :] if self.order > 1 else ()
        for k in range(1, self.order + 1):
            h = context[len(context) - (k - 1) :] if k > 1 else ()
            if k > 1 and len(h) < k - 1:
                break
            total = self.context_total[k].get(h, 0)
            if total == 0:
                continue  # unseen context: keep the lower-order estimate
            d = self.discount[k]
            c = self.counts[k].get(h + (word,), 0)
            p = max(c - d, 0.0) / total + d * self.context_types[k][h] / total * p
        return p

    def target_probs(self, ids: list[int]) -> list[float]:
        """P(ids[i] | the tokens before it) for i >= 1 (the same targets the RNN is scored on)."""
        return [self.prob(tuple(ids[max(0, i - self.order + 1) : i]), ids[i]) for i in range(1, len(ids))]

    def perplexity(self, ids: list[int]) -> float:
        """exp of the mean negative log-probability of ids[1:], each given its preceding tokens."""
        return math.exp(-sum(math.log(p) for p in self.target_probs(ids)) / max(len(ids) - 1, 1))


# The n-gram counterpart of the LSTM's continuous cache (Kuhn & De Mori, 1990): a unigram
# distribution over the last `window` tokens mixed in with weight `lam`, both picked on validation.
# Reported beside the plain baseline, so a reader sees how much of the LSTM's lead the cache makes.
CACHE_LAMBDAS = (0.05, 0.1, 0.2, 0.3, 0.4)
CACHE_WINDOWS = (100, 200, 500, 1000)


def unigram_cache_probs(ids: list[int], window: int) -> list[float]:
    """For i >= 1: the share of ids[i] among the (up to) `window` tokens before it (a sliding count)."""
    counts: Counter = Counter()
    out = []
    for i in range(1, len(ids)):
        counts[ids[i - 1]] += 1
        if i - 1 - window >= 0:
            counts[ids[i - 1 - window]] -= 1
        out.append(counts[ids[i]] / min(i, window))
    return out


def mixed_perplexity(model_probs: list[float], cache_probs: list[float], lam: float) -> float:
    nll = -sum(math.log((1 - lam) * p + lam * c) for p, c in zip(model_probs, cache_probs))
    return math.exp(nll / max(len(model_probs), 1))


def fit_unigram_cache(kn: KneserNeyLM, val_ids: list[int]) -> dict:
    """(lam, window) of the unigram cache that minimise validation perplexity."""
    probs, best = kn.target_probs(val_ids), (math.inf, 0.0, 0)
    for window in CACHE_WINDOWS:
        cache = unigram_cache_probs(val_ids, window)
        for lam in CACHE_LAMBDAS:
            best = min(best, (mixed_perplexity(probs, cache, lam), lam, window))
    return {"lam": best[1], "window": best[2]}


def perplexities(kn: KneserNeyLM, ids: list[int], cache: dict) -> tuple[float, float]:
    """(without, with the fitted unigram cache) from one scoring pass over ids."""
    probs = kn.target_probs(ids)
    plain = math.exp(-sum(math.log(p) for p in probs) / max(len(probs), 1))
    return plain, mixed_perplexity(probs, unigram_cache_probs(ids, cache["window"]), cache["lam"])


# The tokenization-independent yardstick: the same estimator over characters (line break included,
# as one character), fitted on the train text and scored on the test text, in bits per character.
# Characters seen once in train are its unknown, as min_freq 2 makes them <unk> for the token
# models: so it learns how likely an unseen character is instead of leaving it the uniform floor.
CHAR_MIN_FREQ = 2


def char_ids(lines: list[str], stoi: dict[str, int]) -> list[int]:
    """Each line's characters then "\n"; a character not in `stoi` becomes id 0 (unknown)."""
    return [stoi.get(ch, 0) for line in lines for ch in line + "\n"]


def char_bits_per_char(train_lines: list[str], test_lines: list[str], order: int) -> float:
    """Bits per character of a character-level Kneser-Ney of `order` over the test text: -log2 p of
    every character after the first, an unknown character charged its p(unknown) plus the <unk>
    spelling of tasks/lyrics/bits_per_char.py, per scored character."""
    counts = Counter(ch for line in train_lines for ch in line + "\n")
    known = sorted(ch for ch, c in counts.items() if c >= CHAR_MIN_FREQ)
    stoi = {ch: i for i, ch in enumerate(known, start=1)}  # 0: unknown
    kn = KneserNeyLM(order).fit(char_ids(train_lines, stoi), len(stoi) + 1)
    test = char_ids(test_lines, stoi)
    # floored: a train text without singletons leaves the unknown no mass at all
    bits = -sum(math.log2(max(p, 1e-12)) for p in kn.target_probs(test)) + UNK_CHAR_BITS * test[1:].count(0)
    return bits / max(len(test) - 1, 1)
