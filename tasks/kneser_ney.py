"""Interpolated Kneser-Ney n-gram language model: the classic baseline the RNN must beat.

Written out here because the library candidates do not fit: kenlm's estimator is a separate C++
binary (lmplz) that pip does not install, and nltk.lm's KneserNeyInterpolated rescans its counts
for every scored token (see the README's limits for the measured cost). Counting is one pass over
the training stream; scoring is a few dict lookups per token.
"""

import math
from collections import Counter, defaultdict


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
        self.context_total = [defaultdict(int) for _ in range(n + 1)]   # sum over w of counts[k][h + (w,)]
        self.context_types = [defaultdict(int) for _ in range(n + 1)]   # number of w with count > 0
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
        context = context[-(self.order - 1):] if self.order > 1 else ()
        for k in range(1, self.order + 1):
            h = context[len(context) - (k - 1):] if k > 1 else ()
            if k > 1 and len(h) < k - 1:
                break
            total = self.context_total[k].get(h, 0)
            if total == 0:
                continue  # unseen context: keep the lower-order estimate
            d = self.discount[k]
            c = self.counts[k].get(h + (word,), 0)
            p = max(c - d, 0.0) / total + d * self.context_types[k][h] / total * p
        return p

    def perplexity(self, ids: list[int]) -> float:
        """exp of the mean negative log-probability of ids[1:], each given its preceding tokens
        (the same targets the RNN is scored on)."""
        nll = 0.0
        for i in range(1, len(ids)):
            nll -= math.log(self.prob(tuple(ids[max(0, i - self.order + 1) : i]), ids[i]))
        return math.exp(nll / max(len(ids) - 1, 1))
