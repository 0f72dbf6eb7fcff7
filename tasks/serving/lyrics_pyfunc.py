"""The served lyrics model (MLflow pyfunc): start words in, generated lyrics out; the tokenizer,
vocabulary and weights are packaged inside it (the checkpoint is self-describing)."""

import mlflow
import pandas as pd

from tasks.serving.lyrics_generator import (  # noqa: F401 (sampling_defaults: for register, beside the class)
    SAMPLING_DEFAULTS,
    generate,
    load_checkpoint,
    render,
    sampling_defaults,
    start_status,
)


# predict() is hinted with pd.DataFrame: it is what the declared signatures deliver, and without a
# hint MLflow warns on every import (a filter cannot stop it: MLflow re-enables its warnings).
class LyricsGenerator(mlflow.pyfunc.PythonModel):
    """Input: a `start` column of start words. Output, one row per input in order: `start`,
    generated `lyrics` and `status`: "ok", or "empty" (blank start) / "unknown" (no word or
    character the model knows), whose `lyrics` is null; one such row does not fail the request.
    Sampling is set per call through params (length, temperature, top_k, top_p, the repetition
    guard repetition_penalty / repetition_window / no_repeat_ngram_size, seed; seed -1 = random;
    row i uses seed + i); each is optional, SAMPLING_DEFAULTS filling what a call leaves out."""

    def load_context(self, context) -> None:
        self.model, self.vocab, self.tokenizer = load_checkpoint(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        p = {**SAMPLING_DEFAULTS, **(params or {})}
        starts = model_input["start"].tolist() if isinstance(model_input, pd.DataFrame) else list(model_input)
        starts = [None if s is None or (isinstance(s, float) and s != s) else s for s in starts]  # NaN → None
        lyrics, statuses = [], []
        for i, start in enumerate(starts):
            text = "" if start is None else str(start)
            status, tokens = start_status(text, self.vocab, self.tokenizer)
            statuses.append(status)
            if status != "ok":
                lyrics.append(None)
                continue
            out = generate(
                self.model,
                self.vocab,
                tokens,
                int(p["length"]),
                temperature=float(p["temperature"]),
                top_k=int(p["top_k"]),
                top_p=float(p["top_p"]),
                seed=None if int(p["seed"]) < 0 else int(p["seed"]) + i,
                repetition_penalty=float(p["repetition_penalty"]),
                repetition_window=int(p["repetition_window"]),
                no_repeat_ngram_size=int(p["no_repeat_ngram_size"]),
            )
            lyrics.append(render(out))
        # object columns: a missing value stays None (JSON null), where pandas' str dtype would make it NaN
        columns = {"start": starts, "lyrics": lyrics, "status": statuses}
        return pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in columns.items()})
