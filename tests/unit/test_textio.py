"""read_text_file: certain about the encoding or saying so. Byte-order marks and UTF-8 decode;
GB18030 / Big5 only when recognisably Chinese; binary is called binary; random bytes are never
called GBK; every refusal is one line naming the file and the fix."""

import codecs
import random

import pytest

from tasks.common import textio
from tasks.common.errors import PipelineError
from tasks.common.textio import read_text_file
from tests.helpers import JAY_CHOU, make_song

LYRICS = "\n".join(make_song(random.Random(0), 40)) + "\n"
# Traditional characters, as Big5 files from Taiwan or Hong Kong hold them.
BIG5_LYRICS = "我們的愛，像天空下雨\n回憶離開了城市\n想念著你的溫柔\n故事在街角等待\n月光灑在海邊\n" * 4


def write(tmp_path, data: bytes, name: str = "lyrics.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refusal(path) -> str:
    with pytest.raises(PipelineError) as info:
        read_text_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize(
    "bom, codec",
    [
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
    ],
    ids=["utf-8-bom", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"],
)
def test_byte_order_marks_decode(tmp_path, bom, codec):
    assert read_text_file(write(tmp_path, bom + LYRICS.encode(codec))) == LYRICS


def test_utf8_decodes(tmp_path):
    assert read_text_file(write(tmp_path, LYRICS.encode("utf-8"))) == LYRICS


def test_gb18030_chinese_decodes(tmp_path):
    assert read_text_file(write(tmp_path, LYRICS.encode("gb18030"))) == LYRICS


def test_big5_chinese_decodes(tmp_path):
    assert read_text_file(write(tmp_path, BIG5_LYRICS.encode("big5"))) == BIG5_LYRICS


@pytest.mark.skipif(not JAY_CHOU.is_file(), reason="needs ../shared/datasets/jaychou_lyrics.txt")
@pytest.mark.parametrize("codec", ["gb18030", "gbk"])
def test_a_real_corpus_in_gbk_decodes(tmp_path, codec):
    text = JAY_CHOU.read_text(encoding="utf-8")
    assert read_text_file(write(tmp_path, text.encode(codec, errors="ignore"))) == text.encode(
        codec, errors="ignore"
    ).decode(codec)


def test_too_short_to_tell_gbk_from_big5_is_undeterminable(tmp_path):
    # 我爱你 in GBK is also valid Big5 (扂乾斕): three characters cannot tell them apart.
    message = refusal(write(tmp_path, "我爱你\n".encode("gbk")))
    assert "could not determine the encoding" in message and "re-save it as UTF-8" in message


@pytest.mark.parametrize(
    "text, codec",
    [("日本語のテキストです。こんにちは、世界！\n" * 20, "shift_jis"), ("café naïve résumé\n" * 20, "latin-1")],
    ids=["shift-jis", "latin-1"],
)
def test_other_encodings_are_undeterminable_not_guessed(tmp_path, text, codec):
    assert "could not determine the encoding" in refusal(write(tmp_path, text.encode(codec)))


def random_bytes(n: int, values: range | list[int], seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.choices(values, k=n))


@pytest.mark.parametrize(
    "data",
    [
        random_bytes(200_000, range(256)),
        # No NUL and no control byte, every byte a valid GB18030 lead or trail: it all decodes as GB18030.
        random_bytes(200_000, range(0x81, 0xFF)),
        random_bytes(200_000, [*range(0x20, 0x7F), *range(0x81, 0xFF)]),
    ],
    ids=["any-bytes", "gb18030-lead-and-trail-bytes", "printable-and-high-bytes"],
)
def test_random_bytes_are_binary_or_undeterminable_never_gbk(tmp_path, data):
    message = refusal(write(tmp_path, data))
    assert "binary" in message or "could not determine the encoding" in message
    assert "GBK" not in message and "iconv -f GB18030" not in message


def test_nul_bytes_without_a_bom_are_binary(tmp_path):
    message = refusal(write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4))
    assert "binary" in message and "NUL" in message
    # UTF-16 without its mark looks the same: the message says what it needs.
    assert "byte-order mark" in refusal(write(tmp_path, LYRICS.encode("utf-16-le"), "utf16.txt"))


def test_many_control_bytes_are_binary(tmp_path):
    data = random_bytes(10_000, [*range(0x01, 0x09), *range(0x20, 0x7F)])
    assert "binary" in refusal(write(tmp_path, data))
    # A stray control byte or two in real text is not binary.
    assert read_text_file(write(tmp_path, (LYRICS + "\x1a").encode(), "eof.txt")) == LYRICS + "\x1a"


def test_bom_that_lies_is_refused(tmp_path):
    message = refusal(write(tmp_path, codecs.BOM_UTF16_LE + b"\x00\xd8\x41"))  # a lone surrogate
    assert "UTF-16 LE byte-order mark" in message and "re-save it as UTF-8" in message


@pytest.mark.parametrize(
    "data", [b"", b"  \n\n \r\n", codecs.BOM_UTF8, codecs.BOM_UTF16_LE + " \n".encode("utf-16-le")]
)
def test_empty_files(tmp_path, data):
    assert "empty" in refusal(write(tmp_path, data))


def test_mostly_cjk():
    assert textio.cjk_share("我爱你，“天空”…·baby") == 1.0
    assert textio.cjk_share("only ascii") == 0.0
    assert textio.cjk_share("한국어 텍스트 我") < textio.MIN_CJK_SHARE


def test_confident_detector_is_not_enough_without_cjk(tmp_path, monkeypatch):
    # The detector says GB18030 with full coherence, but the text it decodes is not Chinese.
    class Match:
        encoding, coherence = "gb18030", 1.0

        def __str__(self):
            return "한국어 텍스트입니다\n" * 10

    class Matches:
        def best(self):
            return Match()

    monkeypatch.setattr(textio.charset_normalizer, "from_bytes", lambda data: Matches())
    assert "could not determine the encoding" in refusal(write(tmp_path, "한국어\n".encode("euc-kr")))
