"""Every cleaning rule of tasks/text/lyric_rules.py, and the clean stage's per-rule report."""

import pytest

from tasks.common.errors import PipelineError
from tasks.common.params import section_from_yaml
from tasks.lyrics.clean import clean_corpus, clean_lines
from tasks.lyrics.params import CleanLyrics
from tasks.text import lyric_rules as tr


def clean_cfg(**overrides) -> CleanLyrics:
    """Every rule on, spelled out so the tests do not depend on the section's defaults."""
    values = dict(
        output="unused.parquet",
        report="unused.json",
        drop_annotations=True,
        drop_lrc_tags=True,
        drop_credits=True,
        to_halfwidth=True,
        to_simplified=True,
        min_chars=2,
        drop_repeated="all",
    )
    return section_from_yaml(CleanLyrics, "lyrics.clean", **{**values, **overrides})


def cleaned(lines: list[str], **overrides) -> list[str]:
    return clean_lines(lines, clean_cfg(**overrides))[1]


# --- single rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("[00:12.34]故事的小黄花", "故事的小黄花"),
        ("[00:12]故事的小黄花", "故事的小黄花"),
        ("[01:02.345][02:03.45]从出生那年就飘着", "从出生那年就飘着"),
        ("[ar:周杰伦]", ""),
        ("[ti:晴天]", ""),
        ("  [AL:叶惠美]  ", ""),
        ("[offset:500]", ""),
        ("没有时间标签的歌词", "没有时间标签的歌词"),
    ],
)
def test_strip_lrc_tags(line, expected):
    assert tr.strip_lrc_tags(line) == expected


def test_to_halfwidth_folds_fullwidth_letters_digits_punctuation():
    assert tr.to_halfwidth("ＡＢＣ１２３，") == "ABC123,"
    assert tr.to_halfwidth("ｂａｂｙ！　我爱你？") == "baby! 我爱你?"
    assert tr.to_halfwidth("天空") == "天空"


@pytest.mark.parametrize(
    "traditional, simplified",
    [
        ("著", "着"),
        ("為", "为"),
        ("看著你", "看着你"),
        ("我們的愛", "我们的爱"),
        ("著名", "著名"),  # the 'notable' reading keeps 著
    ],
)
def test_to_simplified(traditional, simplified):
    assert tr.to_simplified(traditional) == simplified


def test_drop_annotations_removes_marker_and_contents():
    assert tr.drop_annotations("〖韩语Rap译文〗") == ""
    assert tr.drop_annotations("〖间奏〗我爱你〖副歌〗") == "我爱你"
    assert tr.drop_annotations("我爱你") == "我爱你"


@pytest.mark.parametrize(
    "line",
    [
        "作词：方文山",
        "作词:方文山",
        "作曲: 周杰伦",
        "编曲：林迈可",
        "制作人：周杰伦",
        "  作曲 : 周杰伦",
        "Composer: Jay Chou",
        "lyrics - 方文山",
    ],
)
def test_drop_credits_drops_credit_lines(line):
    assert tr.drop_credits(line) == ""


@pytest.mark.parametrize("line", ["作词人很忙", "我的作曲本", "曲终人散", "制作一首歌"])
def test_drop_credits_keeps_lyrics_that_merely_mention_credits(line):
    assert tr.drop_credits(line) == line


def test_keep_allowed_chars_replaces_the_rest_with_spaces():
    assert tr.keep_allowed_chars("♪天空♫") == " 天空 "
    assert tr.keep_allowed_chars("我爱你😀!") == "我爱你 !"
    kept = "天空 baby 123 ,.!?'，。！？、…"
    assert tr.keep_allowed_chars(kept) == kept


# Digits alone are not words: a line of only digits is a track or verse number or a timestamp left
# over, not something sung; digits inside a line with words stay.
@pytest.mark.parametrize("line", ["！！！", "。。。", "~~~", "123", "1 2 3", "♪ ♪", "...", "?!", "—— ——"])
def test_drop_wordless_drops_lines_without_a_word(line):
    assert tr.drop_wordless(line) == ""


@pytest.mark.parametrize("line", ["天空", "baby", "1 2 3 木头人", "oh!", "x"])
def test_drop_wordless_keeps_lines_with_a_word(line):
    assert tr.drop_wordless(line) == line


def test_wordless_lines_are_dropped_and_counted():
    lines = ["！！！", "天空下雨", "。。。", "~~~", "123", "１２３", "baby 我爱你", "♪♪♪"]
    nos, kept, counts = clean_lines(lines, clean_cfg())
    assert kept == ["天空下雨", "baby 我爱你"]
    assert nos == [2, 7]
    assert counts["no_words"]["dropped"] == 6


def test_collapse_spaces():
    assert tr.collapse_spaces("  天空 \t  下雨  ") == "天空 下雨"
    assert tr.collapse_spaces("   ") == ""


# --- repeated lines -----------------------------------------------------------------------------

LINES = ["a", "a", "b", "a", "c", "b", "b"]


def test_repeated_line_mask_all_drops_every_repeat():
    assert tr.repeated_line_mask(LINES, "all") == [True, False, True, False, True, False, False]


def test_repeated_line_mask_consecutive_drops_only_immediate_repeats():
    assert tr.repeated_line_mask(LINES, "consecutive") == [True, False, True, True, True, True, False]


def test_repeated_line_mask_none_keeps_everything():
    assert tr.repeated_line_mask(LINES, "none") == [True] * len(LINES)


# --- the rules in order, through clean_lines ----------------------------------------------------


def test_rule_order_follows_params():
    names = [name for name, _ in tr.lyric_rules(clean_cfg())]
    assert names == [
        "lrc_tags",
        "halfwidth",
        "simplified",
        "annotations",
        "credits",
        "no_words",
        "allowed_chars",
        "spaces",
        "min_chars",
    ]
    off = clean_cfg(
        drop_lrc_tags=False, to_halfwidth=False, to_simplified=False, drop_annotations=False, drop_credits=False
    )
    assert [name for name, _ in tr.lyric_rules(off)] == ["no_words", "allowed_chars", "spaces", "min_chars"]


def test_traditional_credit_line_is_dropped_after_simplification():
    nos, kept, counts = clean_lines(["作詞：方文山", "為你唱歌"], clean_cfg())
    assert kept == ["为你唱歌"]
    assert nos == [2]
    assert counts["credits"]["dropped"] == 1


def test_min_chars():
    assert cleaned(["我", "我爱", "a"], min_chars=2) == ["我爱"]
    assert cleaned(["我", "我爱", "我爱你"], min_chars=3) == ["我爱你"]


def test_clean_lines_full_example_and_counts():
    lines = [
        "[ar:周杰伦]",  # 1 lrc_tags dropped
        "[ti:晴天]",  # 2 lrc_tags dropped
        "[00:01.00]作詞：方文山",  # 3 lrc changed, halfwidth changed, simplified changed, credits dropped
        "作曲:周杰伦",  # 4 credits dropped
        "[00:12.34]故事的小黄花",  # 5 kept, lrc changed
        "〖韩语Rap译文〗",  # 6 annotations dropped
        "ＡＢＣ１２３，我爱你",  # 7 kept, halfwidth changed
        "♪  天空   ♪",  # 8 kept, allowed_chars + spaces changed
        "我",  # 9 min_chars dropped
        "為著你",  # 10 kept, simplified changed
        "   ",  # 11 blank dropped (song separator), no rule blamed
    ]
    nos, kept, counts = clean_lines(lines, clean_cfg())
    assert kept == ["故事的小黄花", "ABC123,我爱你", "天空", "为着你"]
    assert nos == [5, 7, 8, 10]
    dropped = {name: c["dropped"] for name, c in counts.items()}
    assert dropped == {
        "blank": 1,
        "lrc_tags": 2,
        "halfwidth": 0,
        "simplified": 0,
        "annotations": 1,
        "credits": 2,
        "no_words": 0,
        "allowed_chars": 0,
        "spaces": 0,
        "min_chars": 1,
    }
    assert sum(dropped.values()) == len(lines) - len(kept)
    assert counts["lrc_tags"]["changed"] == 2
    assert counts["simplified"]["changed"] == 2  # 作詞 and 為著
    assert counts["allowed_chars"]["changed"] == 1
    assert counts["spaces"]["changed"] == 1


def test_rules_can_be_switched_off():
    assert cleaned(["為著你"], to_simplified=False) == ["為著你"]
    assert cleaned(["ＡＢＣ我爱你"], to_halfwidth=False) == ["我爱你"]  # full-width letters are not allowed chars
    assert cleaned(["作词:方文山"], drop_credits=False) == ["作词 方文山"]  # kept; ":" is not an allowed char
    assert cleaned(["〖间奏〗我爱你"], drop_annotations=False) == ["间奏 我爱你"]
    # without the lrc rule, the tag's brackets are replaced but its digits stay
    assert cleaned(["[00:12.34]我爱你"], drop_lrc_tags=False) == ["00 12.34 我爱你"]


# --- the whole corpus ---------------------------------------------------------------------------


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_clean_corpus_report_adds_up(tmp_path):
    corpus = tmp_path / "raw"
    corpus.mkdir()
    write(
        corpus / "a.lrc",
        [
            "[ti:晴天]",
            "[00:01.00]作詞：方文山",
            "[00:02.00]故事的小黄花",
            "[00:03.00]从出生那年就飘着",
            "[00:04.00]故事的小黄花",
            "",
            "我",
        ],
    )
    write(corpus / "b.txt", ["〖韩语Rap译文〗", "天空下雨", "天空下雨", "故事的小黄花", "為著你"])
    (corpus / "notes.md").write_text("ignored: not a lyric file\n", encoding="utf-8")
    table, report = clean_corpus(corpus, clean_cfg())
    assert report["lines_in"] == 12
    assert report["files"] == 2
    assert report["lines_out"] == table.num_rows == 4
    assert table.column("text").to_pylist() == ["故事的小黄花", "从出生那年就飘着", "天空下雨", "为着你"]
    assert table.column("source").to_pylist() == ["a.lrc", "a.lrc", "b.txt", "b.txt"]
    assert table.column("id").to_pylist() == ["a.lrc:3", "a.lrc:4", "b.txt:2", "b.txt:5"]
    assert table.column("line_no").to_pylist() == [3, 4, 2, 5]
    rules = report["rules"]
    assert rules["repeated"]["dropped"] == 3  # a's chorus, b's double line, b's repeat of a's line
    assert rules["credits"]["dropped"] == 1
    assert rules["annotations"]["dropped"] == 1
    assert rules["min_chars"]["dropped"] == 1
    assert sum(r["dropped"] for r in rules.values()) == report["lines_in"] - report["lines_out"]


@pytest.mark.parametrize("mode, expected_out", [("all", 3), ("consecutive", 4), ("none", 5)])
def test_clean_corpus_drop_repeated_modes(tmp_path, mode, expected_out):
    path = write(tmp_path / "song.txt", ["天空下雨", "天空下雨", "我爱你", "天空下雨", "回忆"])
    table, report = clean_corpus(path, clean_cfg(drop_repeated=mode))
    assert table.num_rows == report["lines_out"] == expected_out
    assert report["rules"]["repeated"]["dropped"] == 5 - expected_out


def test_clean_corpus_with_nothing_left_raises(tmp_path):
    path = write(tmp_path / "credits.txt", ["作词：方文山", "作曲：周杰伦", "我"])
    with pytest.raises(PipelineError, match="no usable lyric lines left") as info:
        clean_corpus(path, clean_cfg())
    assert str(info.value).startswith(f"{path}: ")
    assert "2 credits, 1 min_chars" in str(info.value)


def test_punctuation_only_corpus_raises_naming_the_corpus(tmp_path):
    corpus = tmp_path / "raw"
    corpus.mkdir()
    write(corpus / "a.txt", ["！！！", "。。。"])
    write(corpus / "b.txt", ["~~~", "123", "♪♪"])
    with pytest.raises(PipelineError, match="no usable lyric lines left") as info:
        clean_corpus(corpus, clean_cfg())
    assert str(info.value).startswith(f"{corpus}: ")
    assert "5 no_words" in str(info.value)


def test_clean_table_records_its_corpus(tmp_path):
    path = write(tmp_path / "song.txt", ["天空下雨", "我爱你"])
    table, _ = clean_corpus(path, clean_cfg())
    assert table.schema.metadata[b"corpus"] == str(path).encode()


@pytest.mark.parametrize("mode", ["all", "consecutive"])
def test_clean_stage_run_with_params(tiny_params, mode):
    import json

    import pyarrow.parquet as pq

    from tasks import clean

    tiny_params.lyrics.clean.drop_repeated = mode
    report = clean.run(tiny_params)
    assert report["files"] == 6
    assert report["lines_in"] == 6 * 32  # 30 lines + a 2-line chorus repeat per song
    if mode == "all":
        assert report["rules"]["repeated"]["dropped"] >= 6 * 2  # at least every chorus repeat
    assert sum(r["dropped"] for r in report["rules"].values()) == report["lines_in"] - report["lines_out"]
    cfg = tiny_params.lyrics.clean
    assert pq.read_table(cfg.output).num_rows == report["lines_out"]
    assert json.loads(open(cfg.report, encoding="utf-8").read()) == report
