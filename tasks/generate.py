"""Generate lyrics from a start word with a trained language model.

    python -m tasks.generate --start 分手 --length 50 [--model URI|PATH] [--params params.yaml]
                             [--temperature 1.0] [--top-k 0] [--top-p 0.9] [--seed 1]
                             [--repetition-penalty 1.3] [--repetition-window 20] [--no-repeat-ngram-size 0]

A sampling option left out takes the model's default: a registered model's declared inference
params (the setting evaluate chose on validation when it was registered with it), a model.pt the
fallbacks of tasks/serving/lyrics_pyfunc.py (SAMPLING_DEFAULTS).

--model takes any MLflow model URI (models:/name@alias, runs:/id/model) or a local model.pt; by
default the registered champion, models:/<lyrics.register.model_name>@<lyrics.register.alias> of
params.yaml, from the store its tracking.uri names (MLFLOW_TRACKING_URI wins).

A blank --start, or one with no word or character the model knows, is a one-line error (exit 2).
"""

import argparse
from pathlib import Path

from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError
from tasks.serving.lyrics_generator import SAMPLING_DEFAULTS, generate_text, load_checkpoint
from tasks.serving.model_uri import champion_uri, load_pyfunc

# the sampling options (argparse dest = generate()'s keyword = the pyfunc's inference param)
SAMPLING_KEYS = ("temperature", "top_k", "top_p", "repetition_penalty", "repetition_window", "no_repeat_ngram_size")


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
    parser.add_argument("--temperature", type=float, help="softmax temperature")
    parser.add_argument("--top-k", type=int, help="keep the k likeliest tokens; 0 disables")
    parser.add_argument("--top-p", type=float, help="nucleus sampling; 1.0 disables")
    parser.add_argument(
        "--repetition-penalty", type=float, help="CTRL-style penalty (> 1) on tokens of the recent window; 1.0 disables"
    )
    parser.add_argument("--repetition-window", type=int, help="tokens the penalty looks back over; 0: all so far")
    parser.add_argument("--no-repeat-ngram-size", type=int, help="never repeat an n-gram of this size; 0 disables")
    parser.add_argument("--seed", type=int, default=None, help="fix for reproducible output")
    args = parser.parse_args()
    if not args.start.strip():
        raise PipelineError("--start is empty; pass a start word or phrase, e.g. --start 分手")
    given = {k: getattr(args, k) for k in SAMPLING_KEYS if getattr(args, k) is not None}
    uri = args.model or champion_uri("lyrics", args.params)
    if Path(uri).is_file():
        model, vocab, tokenizer = load_checkpoint(uri)
        sampling = {k: SAMPLING_DEFAULTS[k] for k in SAMPLING_KEYS} | given
        print(generate_text(model, vocab, tokenizer, args.start, args.length, seed=args.seed, **sampling))
        return
    # pandas (and, inside load_pyfunc, MLflow) only when a URI needs them: MLflow takes seconds to import.
    import pandas as pd  # noqa: PLC0415

    pyfunc = load_pyfunc(uri, params_file=args.params)
    result = pyfunc.predict(
        pd.DataFrame({"start": [args.start]}),
        # only what was given: the rest is the registered model's declared default
        params={"length": args.length, **given, "seed": -1 if args.seed is None else args.seed},
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
