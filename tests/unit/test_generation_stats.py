"""Generation statistics on hand-worked examples, and choosing the sampling setting on them."""

import math
import random

import pytest

from tasks.lyrics.generation_stats import (
    EPS,
    adjacent_repeat_rate,
    distance,
    distinct_2,
    generation_stats,
    han_only,
    ngram_set,
    real_segments,
    real_stats,
    top5_char_share,
    train_ngram_rate,
)
from tasks.lyrics.sampling_choice import choose_sampling, draw_starts, grid_settings


def test_han_only_drops_latin_digits_punctuation_and_line_breaks():
    assert han_only("Baby 你好，\n我 OK 爱 2024!") == "你好我爱"


def test_adjacent_repeat_rate_counts_within_a_sample():
    # 爱爱你: 1 repeat of 2 pairs; 我我我: 2 of 2; the boundary 你|我 between samples is no pair
    assert adjacent_repeat_rate(["爱爱你", "我我我"]) == pytest.approx(3 / 4)
    assert adjacent_repeat_rate(["你", "我我"]) == pytest.approx(1.0)  # a 1-char sample has no pair
    assert adjacent_repeat_rate([]) == 0.0


def test_top5_char_share_pools_the_samples():
    # 六 twice, five others once: the top 5 are 六 (2) and four singletons (4) of 7 characters
    assert top5_char_share(["一二三", "四五六六"]) == pytest.approx(6 / 7)
    assert top5_char_share(["爱爱爱"]) == 1.0


def test_distinct_2_is_distinct_over_all_bigrams_pooled():
    # 你好你好 → 你好 好你 你好; 你好 → 你好: 4 bigrams, 2 distinct
    assert distinct_2(["你好你好", "你好"]) == pytest.approx(2 / 4)
    assert distinct_2(["一二三四"]) == 1.0
    assert distinct_2(["一"]) == 0.0


def test_train_ngram_windows_cross_line_breaks_and_count_verbatim_copies():
    train = ngram_set(["一二三四，", "五六七八九"])  # Han only, lines joined: 一二三四五六七八九
    assert train == {"一二三四五六七八", "二三四五六七八九"}
    # 一二三四五六七八十: windows 一..八 (in train) and 二..十 (not)
    assert train_ngram_rate(["一二三四五六七八十"], train) == pytest.approx(1 / 2)
    assert train_ngram_rate(["一二三"], train) == 0.0  # shorter than a window


def test_generation_stats_strip_non_han_first():
    stats = generation_stats(["a爱 b爱\n爱"], set())
    assert stats == {"adjacent_repeat_rate": 1.0, "top5_char_share": 1.0, "distinct_2": 0.5, "train_8gram_rate": 0.0}


def test_real_segments_start_at_a_line_and_match_the_lengths():
    lines = ["一二三", "四五六"]
    assert real_segments(lines, [4], random.Random(0)) == ["一二三四"]  # from 四 only 3 are left
    assert real_segments(lines, [10], random.Random(0)) == ["一二三四五六"]  # longer than the text: all of it
    drawn = {real_segments(lines, [3], random.Random(s))[0] for s in range(20)}
    assert drawn == {"一二三", "四五六"}


def test_real_stats_are_averaged_over_draws():
    lines = ["爱爱", "你我"]  # segments of 2: 爱爱 (repeat rate 1) or 你我 (0)
    stats = real_stats(lines, [2], set(), seed=1, draws=400)
    assert 0.4 < stats["adjacent_repeat_rate"] < 0.6


def test_distance_is_zero_for_equal_stats_and_charges_memorisation_only_above_real():
    real = {"adjacent_repeat_rate": 0.01, "top5_char_share": 0.15, "distinct_2": 0.5, "train_8gram_rate": 0.01}
    assert distance(real, real) == 0.0
    more_repeats = {**real, "adjacent_repeat_rate": 0.1}
    assert distance(more_repeats, real) == pytest.approx(math.log((0.1 + EPS) / (0.01 + EPS)))
    fewer_repeats = {**real, "adjacent_repeat_rate": 0.001}
    assert distance(fewer_repeats, real) == pytest.approx(math.log((0.01 + EPS) / (0.001 + EPS)))
    assert distance({**real, "train_8gram_rate": 0.0}, real) == 0.0  # copying less than real text is fine
    copies = {**real, "train_8gram_rate": 0.2}
    assert distance(copies, real) == pytest.approx(math.log((0.2 + EPS) / (0.01 + EPS)))


# --- choosing the sampling setting --------------------------------------------------------------


def test_grid_settings_is_every_combination_in_declared_order():
    grid = {"temperature": [0.8, 1.0], "top_k": [0], "repetition_penalty": [1.0, 1.3]}
    assert grid_settings(grid) == [
        {"temperature": 0.8, "top_k": 0, "repetition_penalty": 1.0},
        {"temperature": 0.8, "top_k": 0, "repetition_penalty": 1.3},
        {"temperature": 1.0, "top_k": 0, "repetition_penalty": 1.0},
        {"temperature": 1.0, "top_k": 0, "repetition_penalty": 1.3},
    ]


def test_choose_sampling_picks_the_setting_whose_stats_are_closest_to_real():
    real_lines = ["春夏秋冬"] * 50  # every 8-character segment of it is 春夏秋冬春夏秋冬
    outputs = {0.5: "爱爱爱爱爱爱爱爱", 1.0: "春夏秋冬春夏秋冬", 2.0: "一二三四五六七八"}
    calls = []

    def fake_sample(starts, setting, seed):
        calls.append((len(starts), setting["temperature"], seed))
        return [outputs[setting["temperature"]] for _ in starts]

    settings = grid_settings({"temperature": [0.5, 1.0, 2.0]})
    starts = [["春"], ["夏"], ["秋"]]
    chosen, rows = choose_sampling(fake_sample, settings, starts, real_lines, set(), seed=7)
    assert chosen == {"temperature": 1.0}
    assert [r["setting"] for r in rows] == settings
    assert rows[1]["distance"] == pytest.approx(0.0, abs=1e-9) and min(rows[0]["distance"], rows[2]["distance"]) > 1
    assert rows[0]["generated"]["adjacent_repeat_rate"] == 1.0 and rows[1]["real"]["adjacent_repeat_rate"] == 0.0
    assert calls == [(3, 0.5, 7), (3, 1.0, 7), (3, 2.0, 7)]  # every setting on the same starts and seed


def test_choose_sampling_keeps_the_first_of_equals():
    settings = grid_settings({"top_k": [0, 40]})
    chosen, _ = choose_sampling(lambda starts, s, seed: ["春夏"] * len(starts), settings, [["春"]], ["春夏"], set(), 0)
    assert chosen == {"top_k": 0}


def test_draw_starts_takes_known_first_tokens_seeded():
    lines = [["我", "爱"], ["你", "好"], ["周杰伦"], [], ["天空", "蓝"]]
    known = {"我", "你", "天空"}
    a = draw_starts(lines, 2, known, seed=3)
    assert a == draw_starts(lines, 2, known, seed=3) and len(a) == 2
    assert all(len(s) == 1 and s[0] in known for s in a)
    assert sorted(t for [t] in draw_starts(lines, 10, known, seed=3)) == sorted(known)  # capped at the 3 there are
