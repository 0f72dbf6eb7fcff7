"""The served review classifier (MLflow pyfunc): raw review texts in, label, probability and the
status contract of `tasks.serving.review_predictor` out; cleaning, segmentation, vocabulary and
weights are packaged inside it."""

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from tasks.serving.review_predictor import Prediction, ReviewModel

# One request's bounds. `mlflow models serve` has no body-size limit of its own (it reads the whole
# body, then parses it): past these the request is answered 400 before any text is segmented.
MAX_REQUEST_ROWS = 10_000
MAX_REQUEST_CHARS = 1_000_000  # characters over all texts of a request (~3 MB of UTF-8 Chinese)
COLUMNS = ["label", "probability", "status", "known_share", "truncated"]


def check_request_size(texts: list[str]) -> None:
    """Raise MLflow's INVALID_PARAMETER_VALUE (HTTP 400 from the scoring server) for a request over
    the documented bounds, with the figures and the fix."""
    chars = sum(len(t) for t in texts)
    if len(texts) > MAX_REQUEST_ROWS or chars > MAX_REQUEST_CHARS:
        raise MlflowException(
            f"request too large: {len(texts):,} texts, {chars:,} characters; the limits are "
            f"{MAX_REQUEST_ROWS:,} texts and {MAX_REQUEST_CHARS:,} characters per request: split it",
            error_code=INVALID_PARAMETER_VALUE,
        )


def predictions_frame(rows: list[Prediction], classes: list) -> pd.DataFrame:
    """Predictions → the served DataFrame, nulls where a status is not ok (JSON null, not NaN):
    integer classes stay integers (nullable Int64), class names stay strings."""
    integer = all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
    dtypes = {"label": "Int64" if integer else object, "probability": "Float64", "status": object}
    dtypes |= {"known_share": "Float64", "truncated": bool}
    # pd.Series, not pd.array: a DataFrame re-infers pandas' str dtype from an object array of strings,
    # and its missing values become NaN
    return pd.DataFrame({c: pd.Series([getattr(r, c) for r in rows], dtype=dtypes[c]) for c in COLUMNS})


def texts_of(model_input) -> list[str]:
    """The `text` column (or the first one, or a list of strings) as strings; null → ""."""
    if isinstance(model_input, pd.DataFrame):
        values = model_input["text" if "text" in model_input.columns else model_input.columns[0]].tolist()
    else:
        values = list(model_input)
    return ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in values]


class ReviewClassifier(mlflow.pyfunc.PythonModel):
    """Input: a `text` column of raw reviews (or a list of strings). Output, one row per input in
    order: `label`, `probability`, `status` ("ok" / "empty" / "unknown"; label and probability are
    null unless ok), `known_share` and `truncated`. Cleaning, jieba and vocab are inside. A request
    over MAX_REQUEST_ROWS texts or MAX_REQUEST_CHARS characters is refused (HTTP 400)."""

    def load_context(self, context) -> None:
        self.model = ReviewModel(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        texts = texts_of(model_input)
        check_request_size(texts)
        return predictions_frame(self.model.predictions(texts), self.model.classes)
