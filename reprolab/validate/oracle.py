"""Forecasts against the filter oracle: the gap to the best achievable accuracy.

Reads the judge-only truth, so only the validate stage (after training) calls it.

Two views, both on exactly the same test windows (paired):
* realised accuracy minus the oracle's realised accuracy (carries label noise, ~1 point at
  2,500 windows);
* expected accuracy of each decision rule under the oracle's probabilities, minus the
  oracle's own (no label noise: E[1{pred = y}] = p if pred is up else 1 - p).

Intervals are paired bootstraps over date blocks: the windows of one trading day share the
market, so all symbols of a day are resampled together (:data:`BLOCK`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprolab.core.errors import DataQualityError


def _joined(predictions: pd.DataFrame, labels: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Labels, predicted probability and the oracle's, per test window (``labels`` order)."""
    joined = labels.merge(predictions, on=["symbol", "date"], how="left", validate="one_to_one")
    joined = joined.merge(truth, on=["symbol", "date"], how="left", validate="one_to_one")
    if joined["probability"].isna().any() or joined["oracle_p_up"].isna().any():
        raise DataQualityError("oracle gap: predictions or truth do not cover every test window")
    return joined


def window_scores(
    predictions: pd.DataFrame, labels: pd.DataFrame, truth: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Per test window, in ``labels`` order: realised hit (0/1) and expected hit under the
    oracle's probabilities, for the predictions and for the oracle itself."""
    joined = _joined(predictions, labels, truth)
    y = joined["label"].to_numpy().astype(bool)
    up = joined["probability"].to_numpy() > 0.5
    p = joined["oracle_p_up"].to_numpy()
    oracle_up = p > 0.5
    return {
        "hit": (up == y).astype(np.float64),
        "expected": np.where(up, p, 1 - p),
        "oracle_hit": (oracle_up == y).astype(np.float64),
        "oracle_expected": np.where(oracle_up, p, 1 - p),
        "agrees": (up == oracle_up).astype(np.float64),
    }


def reliability(
    predictions: pd.DataFrame, labels: pd.DataFrame, truth: pd.DataFrame, bins: int = 10
) -> list[dict[str, float]]:
    """Equal-count bins of the predicted probability: its mean, the oracle's mean probability
    (what a calibrated forecast would say, without label noise) and the realised up-share."""
    joined = _joined(predictions, labels, truth).sort_values("probability", kind="stable")
    rows = []
    for part in np.array_split(np.arange(len(joined)), bins):
        if len(part) == 0:
            continue
        chunk = joined.iloc[part]
        rows.append(
            {
                "windows": len(chunk),
                "predicted": float(chunk["probability"].mean()),
                "oracle": float(chunk["oracle_p_up"].mean()),
                "realised": float(chunk["label"].mean()),
            }
        )
    return rows


def oracle_gap(predictions: pd.DataFrame, labels: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Accuracy gaps of ``predictions`` (symbol, date, probability) to the filter oracle."""
    w = window_scores(predictions, labels, truth)
    return {
        "windows": len(w["hit"]),
        "accuracy": float(w["hit"].mean()),
        "oracle_accuracy": float(w["oracle_hit"].mean()),
        "accuracy_minus_oracle": float(w["hit"].mean() - w["oracle_hit"].mean()),
        "expected_accuracy": float(w["expected"].mean()),
        "oracle_expected_accuracy": float(w["oracle_expected"].mean()),
        "expected_accuracy_minus_oracle": float(w["expected"].mean() - w["oracle_expected"].mean()),
        "agreement_with_oracle": float(w["agrees"].mean()),
    }


BLOCK = "date: all symbols of a trading day resampled together"  # the bootstrap's unit


def paired_interval(
    diff: np.ndarray, blocks: np.ndarray, n_resamples: int, gen: np.random.Generator
) -> dict[str, Any]:
    """Mean of a per-window difference with its 95% percentile bootstrap interval, paired (the
    same resampled windows for both sides) and by block: windows of one date share the
    market, so whole blocks (``blocks``: per window its date, or any block id) are drawn with
    replacement and each resample's statistic is the mean over the windows of the drawn
    blocks (their sums over their counts). With one window per block this is the window
    bootstrap."""
    diff = np.asarray(diff, dtype=np.float64)
    if len(diff) == 0 or len(blocks) != len(diff):
        raise ValueError(f"paired interval: {len(diff)} differences for {len(blocks)} blocks")
    _, ids = np.unique(np.asarray(blocks), return_inverse=True)
    ids = ids.ravel()
    k = int(ids.max()) + 1
    sums = np.bincount(ids, weights=diff, minlength=k)
    counts = np.bincount(ids, minlength=k).astype(np.float64)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // k)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        drawn = gen.integers(0, k, size=(stop - start, k))
        means[start:stop] = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return {
        "difference": float(diff.mean()),
        "ci95_low": float(lo),
        "ci95_high": float(hi),
        "blocks": k,
    }


def above_oracle(
    scores: dict[str, np.ndarray],
    blocks: np.ndarray,
    n_resamples: int,
    gen: np.random.Generator,
) -> dict:
    """The leakage alarm. No causal forecast can beat the filter oracle on average (it is the
    Bayes rule given all the past), so a realised accuracy above the oracle's whose paired
    95% interval (date blocks: :func:`paired_interval`) lies wholly above zero says the model
    saw something it should not have."""
    interval = paired_interval(scores["hit"] - scores["oracle_hit"], blocks, n_resamples, gen)
    return {**interval, "alarm": bool(interval["ci95_low"] > 0)}
