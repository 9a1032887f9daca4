"""What every stage reports with: classification metrics, rounding, the dvclive logger.

Classification metrics for direction forecasts carry bootstrap intervals.

Accuracy alone misleads on up/down data (an "always up" rule scores the up-share), so every
report carries balanced accuracy, MCC, AUC, log loss and Brier score beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def rounded(obj: Any, digits: int = 6) -> Any:
    """Floats to ``digits`` significant digits, through dicts and lists: stable metrics files.

    Significant (not decimal) digits keep small errors such as 4.9e-4 readable.
    """
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


def keras_names(logs: Mapping[str, float]) -> dict[str, float]:
    """Keras epoch logs as dvclive names: ``val_loss`` -> ``val/loss``, ``loss`` ->
    ``train/loss``."""
    return {
        (f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"): value
        for key, value in logs.items()
    }


class LiveLog:
    """The one dvclive logger of every trainer: one ``step`` call is one plotted step.

    Metrics land in ``directory`` (``dvc plots show`` reads them); no dvc.yaml or experiment
    is written from inside a stage, since DVC itself tracks the stage.
    """

    def __init__(self, directory: Path) -> None:
        from dvclive import Live

        self.live = Live(dir=str(directory), dvcyaml=False, save_dvc_exp=False)
        self.steps = 0

    def step(self, metrics: Mapping[str, float]) -> None:
        for name, value in sorted(metrics.items()):
            self.live.log_metric(name, float(value))
        self.live.next_step()
        self.steps += 1

    def end(self) -> None:
        self.live.end()

    def __enter__(self) -> LiveLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()
