"""How far the classifier's probabilities can be taken at their word: the expected calibration
error (torchmetrics, top-label, L1, equal-width bins) and the reliability diagram's bins (sklearn's
calibration curve of "the predicted label is right" against the confidence in it)."""

import numpy as np
import torch
from sklearn.calibration import calibration_curve
from torchmetrics.functional.classification import multiclass_calibration_error

CALIBRATION_BINS = 10


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = CALIBRATION_BINS) -> float:
    """Σ_bins (share of reviews) × |accuracy − mean confidence| over the top-label confidence (N, C)."""
    return float(
        multiclass_calibration_error(
            torch.from_numpy(probs).float(),
            torch.from_numpy(y_true).long(),
            num_classes=probs.shape[1],
            n_bins=n_bins,
            norm="l1",
        )
    )


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = CALIBRATION_BINS) -> list[dict]:
    """The non-empty confidence bins: mean confidence, accuracy and review count of each (what the
    reliability diagram draws and the DVC plot reads)."""
    confidence, correct = probs.max(1), (probs.argmax(1) == y_true).astype(int)
    accuracy, mean_conf = calibration_curve(correct, confidence, n_bins=n_bins, strategy="uniform", pos_label=1)
    # the bin of each review as calibration_curve assigns it (an edge value goes to the lower bin)
    counts = np.bincount(np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], confidence), minlength=n_bins)
    return [
        {"confidence": float(c), "accuracy": float(a), "reviews": int(n)}
        for c, a, n in zip(mean_conf, accuracy, counts[counts > 0])
    ]
