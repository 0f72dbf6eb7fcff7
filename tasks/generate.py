"""Generate lyrics from a start word with a trained language model.

    python -m tasks.generate --start 分手 --length 50 [--model models:/lyrics-lm@champion]
                             [--temperature 0.8] [--top-k 20] [--top-p 0.9] [--seed 1]

--model takes any MLflow model URI (models:/name@alias, runs:/id/model) or a local model.pt.
"""

import argparse
from pathlib import Path

from tasks.common.cli import run_cli
from tasks.serving.lyrics_generator import generate_text, load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate lyrics from a start word.")
    parser.add_argument("--start", required=True, help="start word or phrase, e.g. 分手")
    parser.add_argument("--length", type=int, default=50, help="tokens to generate (default 50)")
    parser.add_argument("--model", default="models:/lyrics-lm@champion", help="MLflow model URI or a model.pt path")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=20, help="0 disables")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling; 1.0 disables")
    parser.add_argument("--seed", type=int, default=None, help="fix for reproducible output")
    args = parser.parse_args()
    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
    if Path(args.model).is_file():
        model, vocab, tokenizer = load_checkpoint(args.model)
        print(generate_text(model, vocab, tokenizer, args.start, args.length, **sampling))
        return
    # MLflow and pandas only when a URI needs them: MLflow takes seconds to import.
    import pandas as pd  # noqa: PLC0415

    from tasks.serving.model_uri import load_pyfunc  # noqa: PLC0415

    pyfunc = load_pyfunc(args.model)
    result = pyfunc.predict(
        pd.DataFrame({"start": [args.start]}),
        params={"length": args.length, **sampling, "seed": -1 if args.seed is None else args.seed},
    )
    print(result["lyrics"].iloc[0])


if __name__ == "__main__":
    run_cli(main)
