"""The markets' OHLCV check: one clear line naming the source, the column and the row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprolab.core.errors import DataQualityError
from reprolab.core.tables import check_finite


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
