"""Fixed-length windows over causal feature rows, their labels, and the train-only scaler.

Windows are stored as an index (the row of each window's last step), not materialised:
at 500 symbols a materialised (n, 60, F) tensor would be ~100x the feature table.
``materialize`` builds the tensor on demand with a zero-copy sliding view.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from reprolab.core.errors import DataQualityError

SERIES_KEYS = ["symbol", "copy"]
WINDOW_COLUMNS = ["symbol", "copy", "augmented", "date", "label_date", "label", "row"]


def make_windows(table: pd.DataFrame, feature_columns: Sequence[str], window: int) -> pd.DataFrame:
    """Index every window whose rows all have finite features and whose label is not context.

    ``table`` holds whole series sorted by (symbol, copy, date) with columns ``close`` and
    ``context``. The window ending at row t covers rows t-window+1..t; its label is 1 when
    the next close is above the close at t (the direction of the next return). The label row
    t+1 must belong to the same series and must not be a context row.
    """
    feats = table[list(feature_columns)].to_numpy(dtype=np.float64)
    finite = np.isfinite(feats).all(axis=1)
    keys = table[SERIES_KEYS]
    new_series = np.ones(len(table), dtype=bool)
    new_series[1:] = (keys.iloc[1:].to_numpy() != keys.iloc[:-1].to_numpy()).any(axis=1)
    series_id = np.cumsum(new_series) - 1
    # Count of finite rows over each trailing window, within a series (cumsum differences).
    bad = np.concatenate([[0], np.cumsum(~finite)])
    idx = np.arange(len(table))
    start = idx - window + 1
    ok = start >= 0
    ok[ok] &= series_id[start[ok]] == series_id[ok]
    ok[ok] &= (bad[idx[ok] + 1] - bad[start[ok]]) == 0
    # The label row: next row of the same series, not context.
    has_next = np.zeros(len(table), dtype=bool)
    has_next[:-1] = series_id[1:] == series_id[:-1]
    context = table["context"].to_numpy()
    label_ok = has_next.copy()
    label_ok[:-1] &= ~context[1:]
    rows = np.flatnonzero(ok & label_ok)
    close = table["close"].to_numpy()
    dates = table["date"].to_numpy()
    return pd.DataFrame(
        {
            "symbol": table["symbol"].to_numpy()[rows],
            "copy": table["copy"].to_numpy()[rows],
            "augmented": table["augmented"].to_numpy()[rows],
            "date": dates[rows],
            "label_date": dates[rows + 1],
            "label": (close[rows + 1] > close[rows]).astype(np.int8),
            "row": rows.astype(np.int64),
        }
    )


def fit_scaler(rows: pd.DataFrame, feature_columns: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-feature mean and std from the given (training) rows; finite values only."""
    scaler = {}
    for col in feature_columns:
        v = rows[col].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise DataQualityError(f"scaler: column '{col}' has no finite training value")
        std = float(v.std())
        scaler[col] = {"mean": float(v.mean()), "std": std if std > 0 else 1.0}
    return scaler


def apply_scaler(
    values: np.ndarray, scaler: dict[str, dict[str, float]], columns: Sequence[str]
) -> np.ndarray:
    """Standardise feature columns (last axis of ``values``) with a fitted scaler."""
    mean = np.array([scaler[c]["mean"] for c in columns])
    std = np.array([scaler[c]["std"] for c in columns])
    return (values - mean) / std


def materialize(
    table: pd.DataFrame,
    windows: pd.DataFrame,
    feature_columns: Sequence[str],
    window: int,
    scaler: dict[str, dict[str, float]] | None = None,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) with X of shape (n_windows, window, n_features), scaled if a scaler is given."""
    values = table[list(feature_columns)].to_numpy(dtype=np.float64)
    if scaler is not None:
        values = apply_scaler(values, scaler, feature_columns)
    view = np.lib.stride_tricks.sliding_window_view(values.astype(dtype), window, axis=0)
    # view[i] covers rows i..i+window-1 with shape (n_features, window)
    x = view[windows["row"].to_numpy() - window + 1].transpose(0, 2, 1)
    return np.ascontiguousarray(x), windows["label"].to_numpy().astype(np.int8)
