"""Classify reviews with a trained sentiment model: label and probability per text, or a status
saying why there is none.

    python -m tasks.predict "房间很干净，服务也好" "送餐太慢了，菜都凉了"
    python -m tasks.predict - < reviews.txt                 # one review per line from stdin
    python -m tasks.predict --file reviews.txt --format jsonl --batch-size 512

--model takes any MLflow model URI (models:/name@alias, runs:/id/model) or a local model.pt; by
default the registered champion, models:/<reviews.register.model_name>@<reviews.register.alias> of
params.yaml (--params), from the store its tracking.uri names (MLFLOW_TRACKING_URI wins).

Input lines are read and classified in batches, so files of any size stream through; output keeps
the input order, one line per input line. Raw text goes through the same cleaning and segmentation
as training. Each answer has a status: `ok` (label and probability), `empty` (nothing left after
cleaning) or `unknown` (no word the model's vocabulary knows), the last two without a label; a text
longer than the model's max_len is judged on its first max_len tokens and flagged `truncated`.

    text:  label<TAB>probability<TAB>text; `[empty]<TAB>-<TAB>` / `[unknown]<TAB>-<TAB>text` when
           there is no label; a truncated text is shown as `[truncated] text`
    jsonl: {"text", "label", "probability", "status", "known_share", "truncated"} per line; label
           and probability are null unless status is "ok"; known_share is the share of the tokens
           read that the vocabulary knows (null when empty)
"""

import argparse
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.serving.model_uri import champion_uri, load_pyfunc
from tasks.serving.review_predictor import ReviewModel


def read_lines(source: str) -> Iterator[str]:
    """Lines of a file (or stdin for `-`), lazily, UTF-8, without their line breaks."""
    if source == "-":
        stream = sys.stdin
    else:
        path = Path(source)
        if not path.is_file():
            raise PipelineError(
                f"{path}: input file not found; pass a text file with one review per line, or - for stdin"
            )
        stream = open(path, encoding="utf-8-sig", newline=None)  # noqa: SIM115 (closed below, as stdin is not)
    no = 0
    try:
        for no, line in enumerate(stream, start=1):  # noqa: B007 (`no` names the line in the error)
            yield line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise PipelineError(
            f"{source}: not UTF-8 near line {no + 1}; convert it, e.g. iconv -f GB18030 -t UTF-8"
        ) from exc
    finally:
        if stream is not sys.stdin:
            stream.close()


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def within(texts: list[str], max_rows: int, max_chars: int) -> Iterator[list[str]]:
    """A batch cut into parts of at most `max_rows` texts and `max_chars` characters (the served
    model's request bounds); a single longer text is cut to `max_chars` (the model reads only its
    first max_len tokens anyway, and still flags it truncated)."""
    part: list[str] = []
    chars = 0
    for text in texts:
        text = text[:max_chars]
        if part and (len(part) == max_rows or chars + len(text) > max_chars):
            yield part
            part, chars = [], 0
        part.append(text)
        chars += len(text)
    if part:
        yield part


def plain(value):
    """A numpy scalar → its Python value; NaN → None."""
    if isinstance(value, float) and value != value:
        return None
    return value.item() if hasattr(value, "item") else value


RESULT_KEYS = ("label", "probability", "status", "known_share", "truncated")


def load_predictor(uri: str, params_file: str | Path = "params.yaml"):
    """A callable texts → one dict per text (label, probability, status, known_share, truncated):
    a local model.pt directly, else an MLflow pyfunc (one registered before the status contract
    answers status "ok" with known_share and truncated unknown: null)."""
    if Path(uri).is_file():
        model = ReviewModel(uri)
        return lambda texts: [p.as_dict() for p in model.predictions(texts)]
    # pandas (and, inside load_pyfunc, MLflow) only when a URI needs them: MLflow takes seconds to import.
    import pandas as pd  # noqa: PLC0415

    pyfunc = load_pyfunc(uri, make_hint="make reviews", params_file=params_file)

    from tasks.serving.reviews_pyfunc import MAX_REQUEST_CHARS, MAX_REQUEST_ROWS  # noqa: PLC0415 (imports MLflow)

    def predict(texts: list[str]) -> list[dict]:
        rows = []
        for part in within(texts, MAX_REQUEST_ROWS, MAX_REQUEST_CHARS):
            out = pyfunc.predict(pd.DataFrame({"text": part}))
            out = out.astype(object).where(out.notna(), None)  # pd.NA / NaN → None
            for record in out.to_dict(orient="records"):
                row = {key: plain(record.get(key)) for key in RESULT_KEYS}
                row["status"] = row["status"] or "ok"
                rows.append(row)
        return rows

    return predict


def format_result(text: str, result: dict, fmt: str) -> str:
    label, probability = plain(result["label"]), result["probability"]
    if fmt == "jsonl":
        share = result.get("known_share")
        row = {
            "text": text,
            "label": label,
            "probability": None if probability is None else round(float(probability), 6),
            "status": result["status"],
            "known_share": None if share is None else round(float(share), 4),
            "truncated": result.get("truncated"),
        }
        return json.dumps(row, ensure_ascii=False)
    if result["status"] != "ok":
        return f"[{result['status']}]\t-\t{text}"
    mark = "[truncated] " if result.get("truncated") else ""
    return f"{label}\t{probability:.4f}\t{mark}{text}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Classify reviews: label and probability per text.")
    parser.add_argument("texts", nargs="*", help="review texts; `-` reads one review per line from stdin")
    parser.add_argument("--file", "-f", help="read one review per line from this file (`-`: stdin)")
    parser.add_argument(
        "--model",
        help="MLflow model URI or a model.pt path (default: the reviews champion of --params, "
        "models:/<reviews.register.model_name>@<reviews.register.alias>)",
    )
    parser.add_argument("--params", default="params.yaml", help="params file for the defaults (default: params.yaml)")
    parser.add_argument(
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="text: label<TAB>probability<TAB>text ([empty]/[unknown] in the label column when there is "
        "no label); jsonl: one {text,label,probability,status,known_share,truncated} per line",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="reviews per batch when streaming (default 256)")
    args = parser.parse_args()
    if args.batch_size < 1:
        raise PipelineError("--batch-size must be at least 1")
    if args.file:
        texts: Iterable[str] = read_lines(args.file)
    elif args.texts == ["-"]:
        texts = read_lines("-")
    elif args.texts:
        texts = args.texts
    else:
        raise PipelineError('no input: pass texts (python -m tasks.predict "服务很好"), - for stdin, or --file PATH')
    predict = load_predictor(args.model or champion_uri("reviews", args.params), args.params)
    for batch in batched(texts, args.batch_size):
        print("\n".join(format_result(t, r, args.format) for t, r in zip(batch, predict(batch))), flush=True)


if __name__ == "__main__":
    run_cli(main)
