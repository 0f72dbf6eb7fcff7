"""The classic baseline the review classifier must beat: TF-IDF over jieba words (1..n grams) +
logistic regression, fitted on the same train split and scored on the same test split.

Its one knob, the inverse regularisation strength C, is chosen on the validation split (the split
the RNN uses for early stopping), so neither model's settings are picked on the test split."""

from collections.abc import Iterable

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import Pipeline


def _identity(tokens: list[str]) -> list[str]:
    return tokens  # the split already holds jieba tokens: no second tokenizer


def fit_tfidf_baseline(
    train_tokens: Iterable[list[str]],
    train_y: np.ndarray,
    ngram_max: int = 2,
    min_df: int = 2,
    C: float | list[float] = 4.0,
    class_weight: str | None = None,
    seed: int = 13,
    val_tokens: Iterable[list[str]] | None = None,
    val_y: np.ndarray | None = None,
) -> tuple[Pipeline, dict]:
    """Fit TF-IDF (sublinear tf) + L2 logistic regression on token lists (any iterable, read once: a
    stream of the split does, only the sparse features are held). With several values of
    `C`, one regression per value is fitted on the train split's features and the one with the best
    validation macro-F1 is kept (ties: the smaller C, the stronger regularisation).
    Returns the fitted pipeline and {"C": chosen, "val_macro_f1_by_C": {C: score}} (empty scores for one C)."""
    vectorizer = TfidfVectorizer(
        tokenizer=_identity,
        preprocessor=_identity,
        lowercase=False,
        token_pattern=None,
        ngram_range=(1, ngram_max),
        min_df=min(min_df, len(train_y)),
        sublinear_tf=True,
    )
    x_train = vectorizer.fit_transform(train_tokens)
    candidates = sorted(set(C)) if isinstance(C, list) else [C]
    if len(candidates) > 1 and (val_tokens is None or val_y is None):
        raise ValueError("choosing C among several values needs the validation split")
    x_val = vectorizer.transform(val_tokens) if len(candidates) > 1 else None
    best, scores = None, {}
    for c in candidates:
        classifier = LogisticRegression(C=c, max_iter=2000, class_weight=class_weight, random_state=seed).fit(
            x_train, train_y
        )
        if x_val is None:
            best = classifier
            break
        scores[c] = float(f1_score(val_y, classifier.predict(x_val), average="macro", zero_division=0))
        if best is None or scores[c] > scores[best.C]:
            best = classifier
    return Pipeline([("tfidf", vectorizer), ("logreg", best)]), {"C": best.C, "val_macro_f1_by_C": scores}
