"""Classify reviews with a trained sentiment model: label and probability per text.

    python -m tasks.predict "房间很干净，服务也好" "送餐太慢了，菜都凉了"
    python -m tasks.predict - < reviews.txt                 # one review per line from stdin
    python -m tasks.predict --file reviews.txt --format jsonl --batch-size 512

--model takes any MLflow model URI (models:/name@alias, runs:/id/model) or a local model.pt; by
default the registered champion, models:/<reviews.register.model_name>@<reviews.register.alias> of
params.yaml (--params), from the store its tracking.uri names (MLFLOW_TRACKING_URI wins).

Input lines are read and classified in batches, so files of any size stream through; output keeps
the input order, one line per input line. Raw text goes through the same cleaning and jieba
segmentation as training; texts longer than the model's max length are truncated, and empty or
non-Chinese texts still get an answer.
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


def load_predictor(uri: str, params_file: str | Path = "params.yaml"):
    """A callable texts → (labels, probabilities): a local model.pt directly, else an MLflow pyfunc."""
    if Path(uri).is_file():
        return ReviewModel(uri).predict
    # pandas (and, inside load_pyfunc, MLflow) only when a URI needs them: MLflow takes seconds to import.
    import pandas as pd  # noqa: PLC0415

    pyfunc = load_pyfunc(uri, make_hint="make reviews", params_file=params_file)

    def predict(texts: list[str]):
        out = pyfunc.predict(pd.DataFrame({"text": texts}))
        return out["label"].tolist(), out["probability"].astype(float).tolist()

    return predict


def format_result(text: str, label, probability: float, fmt: str) -> str:
    if fmt == "jsonl":
        label = label.item() if hasattr(label, "item") else label
        return json.dumps({"text": text, "label": label, "probability": round(probability, 6)}, ensure_ascii=False)
    return f"{label}\t{probability:.4f}\t{text}"


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
        help="text: label<TAB>probability<TAB>text; jsonl: one {text,label,probability} per line",
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
        labels, probs = predict(batch)
        print("\n".join(format_result(t, lab, p, args.format) for t, lab, p in zip(batch, labels, probs)), flush=True)


if __name__ == "__main__":
    run_cli(main)
