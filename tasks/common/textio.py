"""Read user-supplied text files: certain about the encoding, or a one-line error that says it is not
and how to fix the file.

Certain: a byte-order mark (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE), or bytes that are valid UTF-8.
Otherwise a file is read as GB18030 (GBK) or Big5 only when charset-normalizer names that encoding
and finds the decoded text coherent, and the decoded text is mostly CJK: GB18030 decodes almost any
byte string, so a decode that succeeds proves nothing. Everything else is refused with the fix:
re-save the file as UTF-8. NUL bytes (outside a UTF-16/32 file with its mark) or many control
bytes mean binary, not text.
"""

import codecs
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import charset_normalizer

from tasks.common.errors import PipelineError

log = logging.getLogger(__name__)

# The UTF-32 LE mark starts with the UTF-16 LE one (FF FE), so the longer marks are tried first.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32 BE"),
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 BE"),
)
# C0 control codes and DEL, without tab, newline, vertical tab, form feed and carriage return.
CONTROL_CODES = [*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F]
_CONTROL_BYTES = bytes(CONTROL_CODES)
_CONTROL_CHARS = dict.fromkeys(CONTROL_CODES)  # str.translate: delete them
# Text has next to no control codes (a stray ^Z or ESC); random bytes have 11 % (28 of 256 values).
MAX_CONTROL_SHARE = 0.05
# charset-normalizer's names for the Chinese legacy encodings we accept (they never contain control
# bytes, so a file that reaches the detector has passed the binary check either way).
CHINESE_ENCODINGS = {"gb18030": "GB18030", "gbk": "GBK", "gb2312": "GB2312", "big5": "Big5", "big5hkscs": "Big5-HKSCS"}
# Coherence is charset-normalizer's measure of how well the decoded characters' frequencies fit a
# language. Calibrated on 1,200 slices (1-200 lines) of the Jay Chou corpus encoded as GB18030 and
# Big5: every wrong guess had coherence 0.0, and from about 5 lines on the right guesses are above
# 0.1; shorter files are refused as undeterminable rather than guessed.
MIN_COHERENCE = 0.1
# "Mostly CJK": of the characters that depend on the guess (the non-ASCII ones: ASCII bytes read
# the same in GB18030, Big5 and UTF-8, so English lines in a song neither help nor hurt), at least
# this share must be CJK ideographs or the punctuation Chinese text uses. A wrong decode lands in
# Hangul, kana, symbols or private-use characters.
MIN_CJK_SHARE = 0.9
CJK = re.compile(
    "[\u3400-\u4dbf"  # CJK Unified Ideographs Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\u3000-\u303f"  # CJK symbols and punctuation: 。、「」
    "\uff00-\uffef"  # full-width forms: ，！？
    "\u2000-\u206f"  # general punctuation: “ ” … —
    "\u00b7]"  # middle dot, as in 周杰伦·晴天
)
NON_ASCII = re.compile(r"[^\x00-\x7f]")


def resave(path: Path) -> str:
    """The fix for a file we cannot read as text."""
    return f"re-save it as UTF-8 (your editor's Save with Encoding, or iconv -f ENCODING -t UTF-8 {path} > fixed.txt)"


def cjk_share(text: str) -> float:
    """The share of CJK characters (ideographs and CJK punctuation) among the non-ASCII ones."""
    non_ascii = len(NON_ASCII.findall(text))
    return len(CJK.findall(text)) / non_ascii if non_ascii else 0.0


def binary_reason(data: bytes | str) -> str | None:
    """Why `data` (raw bytes, or text decoded via a byte-order mark) is not text, or None."""
    if (b"\x00" if isinstance(data, bytes) else "\x00") in data:
        return "it contains NUL bytes"
    kept = data.translate(None, _CONTROL_BYTES) if isinstance(data, bytes) else data.translate(_CONTROL_CHARS)
    share = (len(data) - len(kept)) / max(len(data), 1)
    if share > MAX_CONTROL_SHARE:
        return f"{share:.0%} of it is control codes"
    return None


def decode_with_bom(path: Path, data: bytes, mark: bytes, codec: str, name: str) -> str:
    try:
        text = data[len(mark) :].decode(codec)
    except UnicodeDecodeError as exc:
        raise PipelineError(
            f"{path}: starts with a {name} byte-order mark but is not valid {name} "
            f"(bad bytes at offset {exc.start + len(mark)}); {resave(path)}"
        ) from exc
    reason = binary_reason(text)
    if reason:
        raise PipelineError(f"{path}: looks like a binary file ({reason}), not text; remove it or {resave(path)}")
    return text


def detect_chinese(path: Path, data: bytes, utf8_error: UnicodeDecodeError) -> str:
    """The text of a file that is not UTF-8, when it is certainly GB18030/GBK or Big5 Chinese."""
    best = charset_normalizer.from_bytes(data).best()
    if best is not None and best.encoding in CHINESE_ENCODINGS and best.coherence >= MIN_COHERENCE:
        text = str(best)
        if cjk_share(text) >= MIN_CJK_SHARE:
            log.info("%s: not UTF-8; read as %s (detected)", path, CHINESE_ENCODINGS[best.encoding])
            return text
    raise PipelineError(
        f"{path}: could not determine the encoding: not UTF-8 (invalid byte at offset {utf8_error.start}) "
        f"and not recognisably GB18030 or Big5 Chinese; {resave(path)}"
    ) from utf8_error


def read_text_file(path: Path) -> str:
    """The file's text; empty, binary and undeterminable files are refused with a one-line error."""
    path = Path(path)
    data = path.read_bytes()
    bom = next((b for b in BOMS if data.startswith(b[0])), None)
    if bom:
        text = decode_with_bom(path, data, *bom)
    else:
        reason = binary_reason(data)
        if reason:
            raise PipelineError(
                f"{path}: looks like a binary file ({reason}), not text; remove it, or if it is text, "
                "re-save it as UTF-8 (UTF-16/UTF-32 text needs a byte-order mark)"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = detect_chinese(path, data, exc)
    if not text.strip():
        raise PipelineError(f"{path}: file is empty; put UTF-8 text in it or remove it")
    return text


SAMPLE_BYTES = 1 << 20  # how much of a large file decides its encoding


def sample_codec(path: Path, sample: bytes) -> str:
    """The codec of a large file, decided on its first SAMPLE_BYTES as `read_text_file` decides on
    a whole file (a byte-order mark, valid UTF-8, or GB18030/Big5 detected)."""
    bom = next((b for b in BOMS if sample.startswith(b[0])), None)
    if bom:
        return {"utf-8": "utf-8-sig", "utf-16-le": "utf-16", "utf-16-be": "utf-16", "utf-32-le": "utf-32"}.get(
            bom[1], bom[1]
        )
    reason = binary_reason(sample)
    if reason:
        raise PipelineError(f"{path}: looks like a binary file ({reason}), not text; remove it or {resave(path)}")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)  # a character cut at the end is fine
        return "utf-8"
    except UnicodeDecodeError as exc:
        detect_chinese(path, sample, exc)  # raises unless the sample is certainly Chinese in a legacy encoding
        return charset_normalizer.from_bytes(sample).best().encoding


def text_lines(path: Path) -> Iterator[str]:
    """The file's lines (without line breaks), streamed: memory stays flat whatever the file's
    size. A file up to SAMPLE_BYTES is read whole with `read_text_file`'s checks; a larger one is
    decoded with the codec its start shows, and a bad byte later is a one-line error naming the line."""
    path = Path(path)
    with path.open("rb") as f:
        sample = f.read(SAMPLE_BYTES + 1)
    if len(sample) <= SAMPLE_BYTES:
        yield from read_text_file(path).splitlines()
        return
    codec = sample_codec(path, sample[:SAMPLE_BYTES])
    number = 0  # lines read so far, for the error
    try:
        with path.open(encoding=codec) as f:
            for line in f:
                number += 1
                yield line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise PipelineError(
            f"{path}: not valid {codec} after line {number} (its start read as {codec}); {resave(path)}"
        ) from exc
