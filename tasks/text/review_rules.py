"""Cleaning rules for reviews. Like tasks/text_rules.py (whose width and script rules they reuse):
each rule is a named `str -> str`; an empty result drops the review, and the clean stage counts
what each rule changed or dropped. Reviews keep their punctuation and emoticons: `！` and `?` carry
sentiment, so only noise is removed."""

import html
import re
import unicodedata
from collections.abc import Callable

from tasks.text.lyric_rules import collapse_spaces, to_halfwidth, to_simplified

HTML_TAG = re.compile(r"<\s*/?\s*[A-Za-z][^<>]*>")
# ASCII-only URL bodies, so a Chinese sentence right after a link survives: 访问www.a.com交流 → 访问 交流
URL = re.compile(r"(?:https?://|ftp://|www\.)[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+", re.IGNORECASE)
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# The same punctuation mark (or symbol) twice or more in a row: 太差了！！！ → 太差了！, 。。。 → 。
REPEATED_PUNCT = re.compile(r"([^\w\s])\1+")


def strip_html(text: str) -> str:
    """Remove HTML tags (`<br/>` becomes a space) and decode entities (`&amp;` → `&`, `&nbsp;` → space)."""
    text = html.unescape(HTML_TAG.sub(" ", text))
    return HTML_TAG.sub(" ", text).replace("\xa0", " ")  # entities can spell tags: &lt;b&gt;


def drop_urls(text: str) -> str:
    """Remove links: `http://…`, `https://…`, `www.…`."""
    return URL.sub(" ", text)


def drop_emails(text: str) -> str:
    """Remove e-mail addresses."""
    return EMAIL.sub(" ", text)


def drop_control_chars(text: str) -> str:
    """Control characters (tabs, line breaks, \\x00…) become spaces; zero-width and other format
    characters (U+200B, U+FEFF) are removed."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cc":
            out.append(" ")
        elif cat != "Cf":
            out.append(ch)
    return "".join(out)


def collapse_punctuation(text: str) -> str:
    """Runs of one punctuation mark → one: `好！！！！` → `好！`, `???` → `?`."""
    return REPEATED_PUNCT.sub(r"\1", text)


def review_rules(cfg) -> list[tuple[str, Callable[[str], str]]]:
    """The ordered rule list a `reviews.clean` section switches on. Emptiness and `min_chars` are
    not rules here: the clean stage counts them separately (`empty`, `min_chars`)."""
    rules = []
    if cfg.drop_html:
        rules.append(("html", strip_html))  # first: entities can hide anything else
    if cfg.drop_control:
        rules.append(("control_chars", drop_control_chars))
    if cfg.to_halfwidth:
        rules.append(("halfwidth", to_halfwidth))  # before URLs: ｗｗｗ．ａ．ｃｏｍ is a link too
    if cfg.to_simplified:
        rules.append(("simplified", to_simplified))
    if cfg.drop_emails:
        rules.append(("emails", drop_emails))  # before URLs: a@www.b.com is an address
    if cfg.drop_urls:
        rules.append(("urls", drop_urls))
    if cfg.collapse_punctuation:
        rules.append(("repeated_punctuation", collapse_punctuation))
    rules.append(("spaces", collapse_spaces))
    return rules


def clean_review(text: str, rules) -> str:
    """Apply the rules to one text (what predict does to raw input, so serving sees what training saw)."""
    for _, rule in rules:
        text = rule(text)
    return text
