"""The classic baseline the review classifier must beat: TF-IDF over jieba words (1..n grams) +
logistic regression, fitted on the same train split and scored on the same test split."""

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline


def _identity(tokens: list[str]) -> list[str]:
    return tokens  # the split already holds jieba tokens: no second tokenizer


def fit_tfidf_baseline(train_tokens: list[list[str]], train_y: np.ndarray, ngram_max: int = 2, min_df: int = 2,
                       C: float = 4.0, class_weight: str | None = None, seed: int = 13) -> Pipeline:
    """Fit TF-IDF (sublinear tf) + L2 logistic regression on token lists."""
    vectorizer = TfidfVectorizer(tokenizer=_identity, preprocessor=_identity, lowercase=False, token_pattern=None,
                                 ngram_range=(1, ngram_max), min_df=min(min_df, len(train_tokens)), sublinear_tf=True)
    classifier = LogisticRegression(C=C, max_iter=2000, class_weight=class_weight, random_state=seed)
    return Pipeline([("tfidf", vectorizer), ("logreg", classifier)]).fit(train_tokens, train_y)
