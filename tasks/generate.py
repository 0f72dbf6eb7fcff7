"""Generate lyrics from a start word with a trained language model.

    python -m tasks.generate --start 分手 --length 50 [--model URI|PATH] [--params params.yaml]
                             [--temperature 0.8] [--top-k 20] [--top-p 0.9] [--seed 1]

--model takes any MLflow model URI (models:/name@alias, runs:/id/model) or a local model.pt; by
default the registered champion, models:/<lyrics.register.model_name>@<lyrics.register.alias> of
params.yaml, from the store its tracking.uri names (MLFLOW_TRACKING_URI wins).

A blank --start, or one with no word or character the model knows, is a one-line error (exit 2).
"""

import argparse
from pathlib import Path

from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.serving.lyrics_generator import generate_text, load_checkpoint
from tasks.serving.model_uri import champion_uri, load_pyfunc


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate lyrics from a start word.")
    parser.add_argument("--start", required=True, help="start word or phrase, e.g. 分手")
    parser.add_argument("--length", type=int, default=50, help="tokens to generate (default 50)")
    parser.add_argument(
        "--model",
        help="MLflow model URI or a model.pt path (default: the lyrics champion of --params, "
        "models:/<lyrics.register.model_name>@<lyrics.register.alias>)",
    )
    parser.add_argument("--params", default="params.yaml", help="params file for the defaults (default: params.yaml)")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=20, help="0 disables")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling; 1.0 disables")
    parser.add_argument("--seed", type=int, default=None, help="fix for reproducible output")
    args = parser.parse_args()
    if not args.start.strip():
        raise PipelineError("--start is empty; pass a start word or phrase, e.g. --start 分手")
    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
    uri = args.model or champion_uri("lyrics", args.params)
    if Path(uri).is_file():
        model, vocab, tokenizer = load_checkpoint(uri)
        print(generate_text(model, vocab, tokenizer, args.start, args.length, **sampling))
        return
    # pandas (and, inside load_pyfunc, MLflow) only when a URI needs them: MLflow takes seconds to import.
    import pandas as pd  # noqa: PLC0415

    pyfunc = load_pyfunc(uri, params_file=args.params)
    result = pyfunc.predict(
        pd.DataFrame({"start": [args.start]}),
        params={"length": args.length, **sampling, "seed": -1 if args.seed is None else args.seed},
    )
    status = result["status"].iloc[0] if "status" in result.columns else "ok"  # models registered before it: ok
    if status != "ok":
        raise PipelineError(
            f"start text {args.start!r}: the model answered status {status!r} "
            "(no word or character it knows); try a common word, e.g. --start 分手"
        )
    print(result["lyrics"].iloc[0])


if __name__ == "__main__":
    run_cli(main)
