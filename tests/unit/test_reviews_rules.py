"""Tier 1, code: every review cleaning rule, and the clean stage's duplicate / conflict / empty handling."""

import pyarrow as pa
import pytest

from tasks.common.params import section_from_yaml
from tasks.reviews.clean import clean_reviews
from tasks.reviews.params import CleanReviews
from tasks.text import review_rules as rr


def cfg(**kw) -> CleanReviews:
    return section_from_yaml(
        CleanReviews, "reviews.clean", input="in.parquet", output="out.parquet", report="r.json", **kw
    )


def clean(text: str, **kw) -> str:
    return rr.clean_review(text, rr.review_rules(cfg(**kw)))


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("很好<br/>推荐", "很好 推荐"),
        ("<p class='x'>不错</p>", " 不错 "),
        ("价格&amp;质量 &lt;b&gt;好&lt;/b&gt;", "价格&质量  好 "),
        ("a&nbsp;b", "a b"),
        ("3 < 5 并且 6 > 4", "3 < 5 并且 6 > 4"),  # comparisons are not tags
    ],
)
def test_strip_html(raw, expected):
    assert rr.strip_html(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("访问www.smallstonesoft.com交流", "访问 交流"),
        ("详情 https://example.com/a?b=1&c=2 很好", "详情   很好"),
        ("看http://t.cn/abc", "看 "),
    ],
)
def test_drop_urls(raw, expected):
    assert rr.drop_urls(raw) == expected


def test_drop_emails():
    assert rr.drop_emails("联系 foo.bar+x@mail.example.com 退款") == "联系   退款"
    assert rr.drop_emails("没有邮箱 @我") == "没有邮箱 @我"


def test_drop_control_chars():
    assert rr.drop_control_chars("好\x00评\t不错\u200b！\ufeff") == "好 评 不错！"


def test_collapse_punctuation():
    assert rr.collapse_punctuation("太差了！！！！再也不来了。。。") == "太差了！再也不来了。"
    assert rr.collapse_punctuation("好!!!???") == "好!?"
    assert rr.collapse_punctuation("哈哈哈") == "哈哈哈"  # repeated characters are words, not punctuation


def test_halfwidth_and_simplified_are_reused():
    assert clean("服務很好！ＡＢＣ１２３") == "服务很好!ABC123"
    assert clean("服務很好", to_simplified=False) == "服務很好"
    assert clean("ＡＢＣ", to_halfwidth=False) == "ＡＢＣ"


def test_rule_order_and_switches():
    text = "<b>房間</b>很乾淨！！！ 見 www.a.com 或 me@a.com"
    assert clean(text) == "房间 很干净! 见 或"
    assert "www.a.com" in clean(text, drop_urls=False)
    assert "me@a.com" in clean(text, drop_emails=False)
    assert "<b>" in clean(text, drop_html=False)
    assert "!!!" in clean(text, collapse_punctuation=False)


def review_table(texts, labels):
    return pa.table(
        {
            "id": [f"f:{i}" for i in range(len(texts))],
            "source": ["f"] * len(texts),
            "text": texts,
            "label": pa.array(labels, pa.int64()),
            "label_name": [str(x) for x in labels],
        }
    )


def test_clean_reviews_counts_duplicates_conflicts_and_empty():
    texts = ["很好", "很好", "一般般", "一般般", "", None, "http://a.com", "x", "房間乾淨", "太差了！！"]
    labels = [1, 1, 1, 0, 0, 1, 1, 0, 1, 0]
    table, report = clean_reviews(review_table(texts, labels), cfg())
    assert table.column("text").to_pylist() == ["很好", "房间干净", "太差了!"]
    assert table.column("label").to_pylist() == [1, 1, 0]
    assert table.column("id").to_pylist() == ["f:0", "f:8", "f:9"]  # stable ids of the kept rows
    rules = report["rules"]
    assert rules["empty"]["dropped"] == 2  # "" and a missing text: counted, no crash
    assert rules["urls"]["dropped"] == 1  # a review that was only a link
    assert rules["min_chars"]["dropped"] == 1  # "x"
    assert rules["conflicting_labels"] == {"changed": 0, "dropped": 2, "texts": 1}
    assert rules["duplicates"]["dropped"] == 1
    assert rules["simplified"]["changed"] == 1 and rules["repeated_punctuation"]["changed"] == 1
    assert report["lines_in"] == 10 and report["lines_out"] == 3 and report["classes"] == {"0": 1, "1": 2}


def test_clean_reviews_switches_keep_duplicates_and_conflicts():
    table, report = clean_reviews(
        review_table(["很好", "很好", "一般", "一般"], [1, 1, 1, 0]), cfg(drop_duplicates=False, drop_conflicts=False)
    )
    assert table.num_rows == 4 and report["rules"]["duplicates"]["dropped"] == 0
