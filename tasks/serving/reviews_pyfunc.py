"""The served review classifier (MLflow pyfunc): raw review texts in, label and probability out;
cleaning, segmentation, vocabulary and weights are packaged inside it."""

import mlflow
import pandas as pd

from tasks.serving.review_predictor import ReviewModel


class ReviewClassifier(mlflow.pyfunc.PythonModel):
    """Input: a `text` column of raw reviews (or a list of strings). Output: `label` and its
    `probability`, one row per input, in order. Cleaning, jieba and vocab are inside."""

    def load_context(self, context) -> None:
        self.model = ReviewModel(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            texts = model_input["text" if "text" in model_input.columns else model_input.columns[0]].tolist()
        else:
            texts = list(model_input)
        labels, probs = self.model.predict(["" if t is None else str(t) for t in texts])
        return pd.DataFrame({"label": labels, "probability": probs})
