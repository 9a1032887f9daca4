"""Data-quality gates: schema, non-finite values and NaN share, failing with the column name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from reprolab.core.errors import DataQualityError


def check_finite(
    frame: pd.DataFrame,
    columns: Sequence[str],
    source: str,
    max_nan_share: float = 0.0,
    limit_key: str | None = None,
) -> None:
    """No infinite value anywhere; NaN share per column at most ``max_nan_share``.

    ``limit_key``: the params key that sets ``max_nan_share``, cited when it is exceeded
    (none where no NaN is ever allowed).
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataQualityError(f"{source}: missing column(s) {missing}")
    if frame.empty:
        raise DataQualityError(f"{source}: no rows")
    for col in columns:
        values = frame[col].to_numpy(dtype=np.float64)
        n_inf = int(np.isinf(values).sum())
        if n_inf:
            row = int(np.flatnonzero(np.isinf(values))[0])
            raise DataQualityError(
                f"{source}: column '{col}' has {n_inf} infinite value(s), first at row {row}"
            )
        nan = np.isnan(values)
        share = float(nan.mean())
        if share > max_nan_share:
            where = f" ({limit_key})" if limit_key else ""
            raise DataQualityError(
                f"{source}: column '{col}' has NaN share {share:.4%} (first at row "
                f"{int(np.flatnonzero(nan)[0])}), over the limit of {max_nan_share:.4%}{where}"
            )


def check_ohlcv(frame: pd.DataFrame, source: str) -> None:
    """Prices positive and finite, high/low bracket open/close, volume positive."""
    check_finite(frame, ["open", "high", "low", "close", "volume"], source)
    o, h, lo, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    rules = {
        "prices must be > 0": (np.minimum.reduce([o, h, lo, c]) > 0),
        "high must be >= max(open, close)": h >= np.maximum(o, c),
        "low must be <= min(open, close)": lo <= np.minimum(o, c),
        "volume must be > 0": frame["volume"].to_numpy() > 0,
    }
    for rule, ok in rules.items():
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            raise DataQualityError(f"{source}: row {row}: {rule}")
