"""The served lyrics model (MLflow pyfunc): start words in, generated lyrics out; the tokenizer,
vocabulary and weights are packaged inside it (the checkpoint is self-describing)."""

import mlflow
import pandas as pd

from tasks.serving.lyrics_generator import generate_text, load_checkpoint

# predict() is hinted with pd.DataFrame: it is what the declared signatures deliver, and without a
# hint MLflow warns on every import (a filter cannot stop it: MLflow re-enables its warnings).
SAMPLING_DEFAULTS = {"length": 50, "temperature": 0.8, "top_k": 20, "top_p": 1.0, "seed": -1}


class LyricsGenerator(mlflow.pyfunc.PythonModel):
    """Input: a `start` column of start words. Output: `start` and generated `lyrics`.
    Sampling is set per call through params (length, temperature, top_k, top_p, seed; seed -1 = random)."""

    def load_context(self, context) -> None:
        self.model, self.vocab, self.tokenizer = load_checkpoint(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        p = {**SAMPLING_DEFAULTS, **(params or {})}
        starts = model_input["start"].tolist() if isinstance(model_input, pd.DataFrame) else list(model_input)
        lyrics = [
            generate_text(
                self.model,
                self.vocab,
                self.tokenizer,
                str(start),
                int(p["length"]),
                temperature=float(p["temperature"]),
                top_k=int(p["top_k"]),
                top_p=float(p["top_p"]),
                seed=None if int(p["seed"]) < 0 else int(p["seed"]) + i,
            )
            for i, start in enumerate(starts)
        ]
        return pd.DataFrame({"start": starts, "lyrics": lyrics})
