"""Cleaning rules for lyric lines. Each rule is a named function `str -> str`; an empty result
drops the line. The clean stage applies them in order and counts what each one changed/dropped."""

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

import opencc

LRC_TIMESTAMP = re.compile(r"\[\d{1,3}:\d{1,2}(?:[.:]\d{1,3})?\]")
LRC_HEADER = re.compile(r"^\s*\[(?:ar|ti|al|by|offset|re|ve|length|au):[^\]]*\]\s*$", re.IGNORECASE)
ANNOTATION = re.compile(r"〖[^〗]*〗")
# Credit lines: 作词 / 作曲 / 编曲 / 制作人 ... followed by a colon (after half-width folding).
CREDIT = re.compile(
    r"^\s*(?:作词|作曲|编曲|词|曲|制作人|监制|制作|混音|录音|和声|演唱|原唱|出品|发行|"
    r"lyrics|lyricist|composer|music|arranger|producer)\s*(?:[:：]|\s-\s)",
    re.IGNORECASE,
)
# What survives: CJK ideographs, Latin letters, digits, basic punctuation and spaces.
NOT_KEPT = re.compile(r"[^\u4e00-\u9fffA-Za-z0-9 ,.!?'，。！？、…]")
SPACES = re.compile(r"\s+")
# A word: a CJK ideograph or a Latin letter. Digits alone do not make one: a line of only digits
# (`123`, `2`, `1 2`) is a track or verse number or a leftover timestamp, not something sung.
WORD_CHAR = re.compile(r"[\u4e00-\u9fffA-Za-z]")


def strip_lrc_tags(line: str) -> str:
    """`[00:12.34]歌词` → `歌词`; `[ar:周杰伦]` header lines → dropped."""
    if LRC_HEADER.match(line):
        return ""
    return LRC_TIMESTAMP.sub("", line)


def to_halfwidth(line: str) -> str:
    """Full-width letters, digits and punctuation → ASCII (NFKC), e.g. `ＡＢＣ１２３，` → `ABC123,`."""
    return unicodedata.normalize("NFKC", line)


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    # tw2s, not t2s: OpenCC's t2s keeps 著 (its standard spells the particle 着 already), but
    # Taiwan-typeset lyrics write 看著你; tw2s maps those variants first, so 著 → 着 yet 著名 stays.
    return opencc.OpenCC("tw2s")


def to_simplified(line: str) -> str:
    """Traditional → simplified Chinese with OpenCC tw2s (`著` → `着`, `為` → `为`)."""
    return _t2s().convert(line)


def drop_annotations(line: str) -> str:
    """Remove `〖韩语Rap译文〗`-style annotation markers with their contents."""
    return ANNOTATION.sub("", line)


def drop_credits(line: str) -> str:
    """Drop credit lines such as `作词：方文山` or `Composer: Jay Chou`."""
    return "" if CREDIT.match(line) else line


def keep_allowed_chars(line: str) -> str:
    """Replace anything but CJK, Latin letters, digits and basic punctuation with a space."""
    return NOT_KEPT.sub(" ", line)


def collapse_spaces(line: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return SPACES.sub(" ", line).strip()


def drop_wordless(line: str) -> str:
    """Drop lines without a word (a CJK ideograph or a Latin letter): punctuation, symbols or digits
    only, e.g. `！！！`, `。。。`, `~~~`, `♪♪`, `123`. Digits inside a line with words stay."""
    return line if WORD_CHAR.search(line) else ""


def lyric_rules(cfg) -> list[tuple[str, Callable[[str], str]]]:
    """The ordered rule list a `lyrics.clean` params section switches on."""
    rules = []
    if cfg.drop_lrc_tags:
        rules.append(("lrc_tags", strip_lrc_tags))
    if cfg.to_halfwidth:
        rules.append(("halfwidth", to_halfwidth))
    if cfg.to_simplified:
        rules.append(("simplified", to_simplified))  # before credits, so 作詞 matches too
    if cfg.drop_annotations:
        rules.append(("annotations", drop_annotations))
    if cfg.drop_credits:
        rules.append(("credits", drop_credits))
    # Before allowed_chars, so every wordless line (`~~~` and `♪♪` too) is counted here, not as `spaces`.
    rules.append(("no_words", drop_wordless))
    rules.append(("allowed_chars", keep_allowed_chars))
    rules.append(("spaces", collapse_spaces))
    min_chars = cfg.min_chars
    rules.append(("min_chars", lambda line: line if len(line) >= min_chars else ""))
    return rules


def repeated_line_mask(lines: list[str], mode: str) -> list[bool]:
    """Which lines to keep: `all` drops every repeat of an earlier line (choruses), `consecutive`
    only immediate repeats, `none` keeps everything."""
    if mode == "none":
        return [True] * len(lines)
    keep, seen, previous = [], set(), None
    for line in lines:
        repeat = line in seen if mode == "all" else line == previous
        keep.append(not repeat)
        seen.add(line)
        previous = line
    return keep
