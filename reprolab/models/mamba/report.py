"""Classification metrics of direction forecasts, with bootstrap intervals.

Accuracy alone misleads on up/down data (an "always up" rule scores the up-share), so every
report carries balanced accuracy, MCC, AUC, log loss and Brier score beside it.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

_EPS = 1e-7


def bootstrap_accuracy_ci(
    y: np.ndarray, pred: np.ndarray, n_resamples: int, gen: np.random.Generator
) -> tuple[float, float]:
    """95% percentile interval of accuracy over ``n_resamples`` resamples of the points."""
    correct = (np.asarray(y) == np.asarray(pred)).astype(np.float64)
    n = len(correct)
    if n == 0:
        return float("nan"), float("nan")
    # Resample in blocks to bound memory at large n.
    means = np.empty(n_resamples)
    block = max(1, 2_000_000 // n)
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        idx = gen.integers(0, n, size=(stop - start, n))
        means[start:stop] = correct[idx].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def classification_report(
    y: np.ndarray, p_up: np.ndarray, n_resamples: int, gen: np.random.Generator
) -> dict[str, float]:
    """Accuracy (with a 95% bootstrap interval), balanced accuracy, MCC, AUC, log loss, Brier."""
    y = np.asarray(y).astype(np.int64)
    p = np.clip(np.asarray(p_up, dtype=np.float64), _EPS, 1 - _EPS)
    pred = (p > 0.5).astype(np.int64)
    lo, hi = bootstrap_accuracy_ci(y, pred, n_resamples, gen)
    both_classes = len(np.unique(y)) == 2
    return {
        "n": len(y),
        "accuracy": float(np.mean(pred == y)),
        "accuracy_ci95_low": lo,
        "accuracy_ci95_high": hi,
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
        "mcc": float(skm.matthews_corrcoef(y, pred)),
        "auc": float(skm.roc_auc_score(y, p)) if both_classes else float("nan"),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(np.mean((p - y) ** 2)),
    }
