"""How generated lyrics compare with real ones: four statistics over Han characters, each measured
on the samples and on real held-out lyrics of the same lengths, so the two read like for like.

Every text is first reduced to its Han characters (punctuation, Latin, digits and line breaks are
dropped, so a sample is one string). Over a list of such strings:

- adjacent repeat rate: the share of characters equal to the one before them in the same string
  (of all characters that have one before them); a sampler stuck on 爱爱爱 scores high.
- top-5 share: the share of all characters taken by the 5 most frequent ones (pooled).
- distinct-2: distinct character bigrams ÷ all character bigrams (bigrams within a string, pooled);
  it depends on the amount of text, hence real text of the same lengths.
- train 8-gram rate: the share of 8-character windows that occur verbatim in the train split's text
  (its lines joined, Han only): memorisation. For real held-out lyrics it is the baseline a model
  that copies no more than the held-out text itself would reach.

No torch here: plain strings in, floats out.
"""

import math
import random
import re
from collections import Counter

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # CJK unified (+ extension A, compatibility)
MEMO_N = 8  # window length of the memorisation statistic
STATS = ("adjacent_repeat_rate", "top5_char_share", "distinct_2", "train_8gram_rate")


def han_only(text: str) -> str:
    return "".join(HAN.findall(text))


def adjacent_repeat_rate(samples: list[str]) -> float:
    pairs = sum(max(len(s) - 1, 0) for s in samples)
    repeats = sum(a == b for s in samples for a, b in zip(s, s[1:]))
    return repeats / pairs if pairs else 0.0


def top5_char_share(samples: list[str]) -> float:
    counts = Counter(ch for s in samples for ch in s)
    total = sum(counts.values())
    return sum(c for _, c in counts.most_common(5)) / total if total else 0.0


def distinct_2(samples: list[str]) -> float:
    bigrams = [s[i : i + 2] for s in samples for i in range(len(s) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def ngram_set(lines: list[str], n: int = MEMO_N) -> set[str]:
    """Every n-character window of the lines joined (Han only): windows across line breaks count,
    as a sample copying two consecutive lines crosses one."""
    text = han_only("".join(lines))
    return {text[i : i + n] for i in range(len(text) - n + 1)}


def train_ngram_rate(samples: list[str], train_ngrams: set[str], n: int = MEMO_N) -> float:
    windows = [s[i : i + n] for s in samples for i in range(len(s) - n + 1)]
    return sum(w in train_ngrams for w in windows) / len(windows) if windows else 0.0


def generation_stats(texts: list[str], train_ngrams: set[str]) -> dict[str, float]:
    """The four statistics of `texts` (reduced to Han characters here)."""
    samples = [han_only(t) for t in texts]
    return {
        "adjacent_repeat_rate": adjacent_repeat_rate(samples),
        "top5_char_share": top5_char_share(samples),
        "distinct_2": distinct_2(samples),
        "train_8gram_rate": train_ngram_rate(samples, train_ngrams),
    }


def real_segments(lines: list[str], lengths: list[int], rng: random.Random) -> list[str]:
    """One real segment per length: the Han characters of `lines` joined, `length` of them from a
    random line start (the whole text when it is shorter)."""
    text, starts = "", []
    for line in lines:
        starts.append(len(text))
        text += han_only(line)
    segments = []
    for length in lengths:
        fits = [s for s in starts if s + length <= len(text)] or [0]
        start = rng.choice(fits)
        segments.append(text[start : start + length])
    return segments


def real_stats(lines: list[str], lengths: list[int], train_ngrams: set[str], seed: int, draws: int = 20) -> dict:
    """The statistics of real text cut to `lengths` (the samples' Han lengths), averaged over
    `draws` independent draws of segments: a steadier reference than one draw, at the same size."""
    rng = random.Random(seed)
    runs = [generation_stats(real_segments(lines, lengths, rng), train_ngrams) for _ in range(draws)]
    return {k: sum(r[k] for r in runs) / draws for k in STATS}


EPS = 1e-3  # keeps log(gen / real) finite when a rate is 0 (no repeats in a short text)


def distance(generated: dict, real: dict) -> float:
    """How far generated statistics are from the real ones: sum of |log((g + eps) / (r + eps))|
    over the three style statistics, plus, for memorisation, only the excess over real text
    (copying less of train than held-out lyrics do is not a fault)."""
    style = sum(abs(math.log((generated[k] + EPS) / (real[k] + EPS))) for k in STATS[:3])
    memo = math.log((generated["train_8gram_rate"] + EPS) / (real["train_8gram_rate"] + EPS))
    return style + max(memo, 0.0)
