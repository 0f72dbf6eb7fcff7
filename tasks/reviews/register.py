"""Registering the review classifier: `review-sentiment`, a pyfunc that takes raw review texts and
returns label, probability and status, gated on test macro-F1 (higher is better), described by its
model card (tasks/reviews/card.py)."""

import pandas as pd

from tasks.common.registry import ServedModel, register_version
from tasks.reviews.card import card
from tasks.serving.review_predictor import ReviewModel
from tasks.serving.reviews_pyfunc import ReviewClassifier, predictions_frame

# The empty one makes the signature say what can be null (label, probability, known_share).
EXAMPLES = ["房间很干净，服务也好", "送餐太慢了，菜都凉了", ""]


def register(params, tp, metrics: dict, checkpoint: dict, extra_tags: dict[str, str], task: str) -> dict:
    """The register stage of this task."""
    reviews = ReviewModel(checkpoint["checkpoint"])
    served = ServedModel(
        ReviewClassifier(),
        input_example=pd.DataFrame({"text": EXAMPLES}),
        output_example=predictions_frame(reviews.predictions(EXAMPLES), reviews.classes),
        inference_params=None,
        score_key="test_macro_f1",
        lower_is_better=False,
        card=card(tp, metrics, checkpoint["checkpoint"]),
    )
    return register_version(params, tp, served, checkpoint, metrics, extra_tags, task)
