"""Choosing how to sample on validation, not by hand: every setting of a small grid (temperature,
top-k, top-p, repetition penalty, no-repeat n-grams) generates from validation start words, and
the setting whose generation statistics lie closest to those of real validation lyrics of the same
lengths (tasks/lyrics/generation_stats.py: `distance`) is the one the test samples use."""

import itertools
import random
from collections.abc import Callable

from tasks.lyrics.generation_stats import distance, generation_stats, han_only, real_stats

# (start tokens of each sample, setting, seed) -> the samples as text, sample i drawn with seed + i and
# its start word included: a real segment begins at a line start with that line's first word too,
# so both are measured alike.
SampleFn = Callable[[list[list[str]], dict, int], list[str]]


def grid_settings(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's lists, in the order they are declared."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def draw_starts(token_lists: list[list[str]], n: int, known: set[str], seed: int) -> list[list[str]]:
    """n start words: the first tokens of distinct lines, drawn with `seed` among lines whose first
    token is in `known` (the vocabulary); fewer when the split has fewer such lines."""
    firsts = [tokens[0] for tokens in token_lists if tokens and tokens[0] in known]
    return [[tok] for tok in random.Random(seed).sample(firsts, min(n, len(firsts)))]


def sample_and_score(
    sample: SampleFn, setting: dict, starts: list[list[str]], real_lines: list[str], train_ngrams: set[str], seed: int
) -> dict:
    """Generate one sample per start (seed + i for the i-th) and measure the samples beside real text
    cut to the same Han lengths: {"texts", "generated", "real", "distance"}."""
    texts = sample(starts, setting, seed)
    generated = generation_stats(texts, train_ngrams)
    real = real_stats(real_lines, [len(han_only(t)) for t in texts], train_ngrams, seed)
    return {"texts": texts, "generated": generated, "real": real, "distance": distance(generated, real)}


def choose_sampling(
    sample: SampleFn,
    settings: list[dict],
    starts: list[list[str]],
    real_lines: list[str],
    train_ngrams: set[str],
    seed: int,
) -> tuple[dict, list[dict]]:
    """(the setting with the smallest distance, the first of equals; one row per setting with its
    statistics, the real ones and the distance), all on the given (validation) starts and text."""
    rows = []
    for setting in settings:
        scored = sample_and_score(sample, setting, starts, real_lines, train_ngrams, seed)
        rows.append({"setting": setting, **{k: v for k, v in scored.items() if k != "texts"}})
    best = min(range(len(rows)), key=lambda i: rows[i]["distance"])
    return settings[best], rows
