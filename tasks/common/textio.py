"""Read user-supplied text files, turning encoding problems into one-line errors with a fix."""

from pathlib import Path

from tasks.common.errors import PipelineError


def read_text_file(path: Path) -> str:
    """Return the file's text (UTF-8, BOM allowed); refuse empty, binary and non-UTF-8 files."""
    data = path.read_bytes()
    if not data.strip():
        raise PipelineError(f"{path}: file is empty; put UTF-8 text in it or remove it")
    if b"\x00" in data[:8192]:
        raise PipelineError(f"{path}: looks like a binary file, not text; remove it or export it as UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        hint = ""
        try:
            data.decode("gb18030")
            hint = " (it decodes as GBK/GB18030)"
        except UnicodeDecodeError:
            pass
        raise PipelineError(
            f"{path}: not UTF-8{hint}, invalid byte at offset {exc.start}; "
            f"convert it, e.g. iconv -f GB18030 -t UTF-8 {path} > fixed.txt"
        ) from exc
