"""The model against the TF-IDF baseline on the same test rows: McNemar's exact test on the reviews
where exactly one of them is right, and both models' scores per review-length slice (the terciles
of the train split's lengths, so the slices mean the same whatever the test split holds)."""

import numpy as np
from scipy.stats import binomtest
from sklearn import metrics as skm


def mcnemar_test(y_true: np.ndarray, pred: np.ndarray, baseline_pred: np.ndarray) -> dict:
    """McNemar's exact test: under "both models are equally accurate" the reviews only one gets
    right split between them as a fair coin would, so the two-sided binomial test of those
    discordant counts is the exact test (what statsmodels' mcnemar(exact=True) computes)."""
    model_right, baseline_right = pred == y_true, baseline_pred == y_true
    only_model, only_baseline = int((model_right & ~baseline_right).sum()), int((~model_right & baseline_right).sum())
    discordant = only_model + only_baseline
    p_value = binomtest(only_model, discordant, 0.5).pvalue if discordant else 1.0
    return {"only_model_right": only_model, "only_baseline_right": only_baseline, "p_value": float(p_value)}


def length_edges(train_lengths: np.ndarray) -> tuple[float, float]:
    """The train split's length terciles: short < first <= medium < second <= long."""
    first, second = np.quantile(train_lengths, [1 / 3, 2 / 3])
    return float(first), float(second)


def length_slices(
    lengths: np.ndarray, edges: tuple[float, float], y_true: np.ndarray, preds: dict[str, np.ndarray]
) -> list[dict]:
    """Per slice (short / medium / long, by characters): its bounds, review count, and each
    model's accuracy and macro-F1 on it."""
    slice_of = np.searchsorted(np.asarray(edges), lengths, side="left")  # 0 short, 1 medium, 2 long
    rows = []
    for k, name in enumerate(("short", "medium", "long")):
        mask = slice_of == k
        row = {"slice": name, "chars": slice_bounds(k, edges), "reviews": int(mask.sum())}
        for model, pred in preds.items():
            if mask.any():
                row[f"{model}_accuracy"] = float(skm.accuracy_score(y_true[mask], pred[mask]))
                row[f"{model}_macro_f1"] = float(
                    skm.f1_score(y_true[mask], pred[mask], average="macro", zero_division=0)
                )
        rows.append(row)
    return rows


def slice_bounds(k: int, edges: tuple[float, float]) -> str:
    low, high = edges
    return [f"<= {low:g}", f"{low:g} < n <= {high:g}", f"> {high:g}"][k]
