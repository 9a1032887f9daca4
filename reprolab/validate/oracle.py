"""Forecasts against the filter oracle: the gap to the best achievable accuracy.

Reads the judge-only truth, so only the validate stage (after training) calls it.

Two views, both on exactly the same test windows (paired):
* realised accuracy minus the oracle's realised accuracy (carries label noise, ~1 point at
  2,500 windows);
* expected accuracy of each decision rule under the oracle's probabilities, minus the
  oracle's own (no label noise: E[1{pred = y}] = p if pred is up else 1 - p).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprolab.core.errors import DataQualityError


def oracle_gap(predictions: pd.DataFrame, labels: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Accuracy gaps of ``predictions`` (symbol, date, probability) to the filter oracle."""
    joined = labels.merge(predictions, on=["symbol", "date"], how="inner", validate="one_to_one")
    joined = joined.merge(truth, on=["symbol", "date"], how="left", validate="one_to_one")
    if len(joined) != len(labels) or joined["oracle_p_up"].isna().any():
        raise DataQualityError("oracle gap: predictions or truth do not cover every test window")
    y = joined["label"].to_numpy().astype(bool)
    up = joined["probability"].to_numpy() > 0.5
    p = joined["oracle_p_up"].to_numpy()
    oracle_up = p > 0.5
    expected = np.where(up, p, 1 - p).mean()
    oracle_expected = np.where(oracle_up, p, 1 - p).mean()
    return {
        "windows": len(joined),
        "accuracy": float((up == y).mean()),
        "oracle_accuracy": float((oracle_up == y).mean()),
        "accuracy_minus_oracle": float((up == y).mean() - (oracle_up == y).mean()),
        "expected_accuracy": float(expected),
        "oracle_expected_accuracy": float(oracle_expected),
        "expected_accuracy_minus_oracle": float(expected - oracle_expected),
        "agreement_with_oracle": float((up == oracle_up).mean()),
    }
