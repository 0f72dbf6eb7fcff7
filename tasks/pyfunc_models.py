"""MLflow pyfunc wrappers: the served model takes raw text, since tokenizer, vocab and weights
are packaged inside it (the checkpoint is self-describing)."""

import os

import mlflow
import pandas as pd

from tasks.errors import PipelineError

# predict() is hinted with pd.DataFrame: it is what the declared signatures deliver, and without a
# hint MLflow warns on every import (a filter cannot stop it: MLflow re-enables its warnings).
SAMPLING_DEFAULTS = {"length": 50, "temperature": 0.8, "top_k": 20, "top_p": 1.0, "seed": -1}


class LyricsGenerator(mlflow.pyfunc.PythonModel):
    """Input: a `start` column of start words. Output: `start` and generated `lyrics`.
    Sampling is set per call through params (length, temperature, top_k, top_p, seed; seed -1 = random)."""

    def load_context(self, context) -> None:
        from tasks.generate import load_checkpoint

        self.model, self.vocab, self.tokenizer = load_checkpoint(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from tasks.generate import generate_text

        p = {**SAMPLING_DEFAULTS, **(params or {})}
        starts = model_input["start"].tolist() if isinstance(model_input, pd.DataFrame) else list(model_input)
        lyrics = [
            generate_text(self.model, self.vocab, self.tokenizer, str(start), int(p["length"]),
                          temperature=float(p["temperature"]), top_k=int(p["top_k"]), top_p=float(p["top_p"]),
                          seed=None if int(p["seed"]) < 0 else int(p["seed"]) + i)
            for i, start in enumerate(starts)
        ]
        return pd.DataFrame({"start": starts, "lyrics": lyrics})


class ReviewClassifier(mlflow.pyfunc.PythonModel):
    """Input: a `text` column of raw reviews (or a list of strings). Output: `label` and its
    `probability`, one row per input, in order. Cleaning, jieba and vocab are inside."""

    def load_context(self, context) -> None:
        from tasks.predict import ReviewModel

        self.model = ReviewModel(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            texts = model_input["text" if "text" in model_input.columns else model_input.columns[0]].tolist()
        else:
            texts = list(model_input)
        labels, probs = self.model.predict(["" if t is None else str(t) for t in texts])
        return pd.DataFrame({"label": labels, "probability": probs})


def load_pyfunc(uri: str, make_hint: str = "make run"):
    """Load a model URI against MLFLOW_TRACKING_URI (default: the project's SQLite store)."""
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db")
    try:
        return mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as exc:
        raise PipelineError(
            f"cannot load {uri} from {mlflow.get_tracking_uri()} ({str(exc).splitlines()[0]}); "
            f"train and register one with `{make_hint}`, or pass --model PATH/TO/model.pt"
        ) from exc
