"""Markets: split first, augmentation after, and only of training data.

One chronological calendar for every symbol, ``train | embargo | val | embargo | test``. The
embargo (>= window + 1 days) keeps every training window and its label away from every
validation and test window. Validation and test files also carry the rows before them,
marked ``context``: causal features at a validation row may look back in time (as a live
forecaster would), but a context row is never labelled. Training files carry no context.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reprolab.core.config import MarketsAugmentParams, MarketsSplitParams
from reprolab.core.errors import DataQualityError
from reprolab.core.paths import SPLITS
from reprolab.core.seeding import rng


@dataclass(frozen=True)
class Calendar:
    """First and one-past-last row index of each part, on the shared date axis."""

    dates: pd.DatetimeIndex
    bounds: dict[str, tuple[int, int]]
    embargo: int

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"embargo_days": self.embargo}
        for name, (lo, hi) in self.bounds.items():
            out[name] = {
                "first_date": str(self.dates[lo].date()),
                "last_date": str(self.dates[hi - 1].date()),
                "days": hi - lo,
            }
        return out


def chronological_calendar(dates: pd.DatetimeIndex, params: MarketsSplitParams) -> Calendar:
    """Cut the sorted unique trading dates into train/val/test with two embargo gaps."""
    n = len(dates)
    e = params.embargo
    usable = n - 2 * e
    n_train = int(np.floor(params.train * usable))
    n_val = int(np.floor(params.val * usable))
    n_test = usable - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise DataQualityError(
            f"markets split: {n} dates leave no room for train/val/test after two embargo gaps "
            f"of {e} days"
        )
    val_lo = n_train + e
    test_lo = val_lo + n_val + e
    bounds = {"train": (0, n_train), "val": (val_lo, val_lo + n_val), "test": (test_lo, n)}
    return Calendar(dates=dates, bounds=bounds, embargo=e)


def split_markets(observed: pd.DataFrame, calendar: Calendar) -> dict[str, pd.DataFrame]:
    """Assign rows by date; val/test keep the rows before them as unlabelled context."""
    position = calendar.dates.get_indexer(pd.DatetimeIndex(observed["date"]))
    if (position < 0).any():
        bad = int(np.flatnonzero(position < 0)[0])
        raise DataQualityError(
            f"markets split: row {bad} has date {observed['date'].iloc[bad]} outside the calendar"
        )
    out = {}
    for name in SPLITS:
        lo, hi = calendar.bounds[name]
        start = lo if name == "train" else 0
        keep = (position >= start) & (position < hi)
        part = observed.loc[keep].reset_index(drop=True)
        part.insert(1, "copy", np.int16(0))
        part["context"] = position[keep] < lo
        part["augmented"] = False
        out[name] = part
    return out


def _augment_returns(
    r: np.ndarray, params: MarketsAugmentParams, gen: np.random.Generator
) -> np.ndarray:
    """Magnitude scaling, smooth magnitude warping, then jitter, on one series' log-returns."""
    scale = gen.uniform(params.scale_min, params.scale_max)
    knots_x = np.linspace(0, len(r) - 1, params.warp_knots)
    knots_y = 1.0 + params.warp * gen.standard_normal(params.warp_knots)
    warp = np.clip(np.interp(np.arange(len(r)), knots_x, knots_y), 0.1, None)
    noise = params.jitter * np.std(r[1:]) * gen.standard_normal(len(r))
    out = r * scale * warp + noise
    out[0] = 0.0  # the first row has no previous close inside the training part
    return out


def augment_train(train: pd.DataFrame, params: MarketsAugmentParams, seed: int) -> pd.DataFrame:
    """Augmented copies of the training series only (``copy`` 1..n, ``augmented`` True).

    The close path is rebuilt from transformed log-returns; open, high and low keep their
    ratio to the close of the same day, so high >= max(open, close) >= min(open, close) >=
    low still holds. Volume is kept. Each (symbol, copy) has its own random stream.
    """
    if params.copies == 0 or train.empty:
        return train.iloc[0:0].copy()
    if train["context"].any() or train["augmented"].any():
        raise DataQualityError("augment_train: input must be original training rows only")
    copies = []
    for symbol, series in train.groupby("symbol", sort=True):
        close = series["close"].to_numpy()
        r = np.concatenate([[0.0], np.diff(np.log(close))])
        for c in range(1, params.copies + 1):
            gen = rng(seed, "markets", "augment", str(symbol), c)
            new_close = close[0] * np.exp(np.cumsum(_augment_returns(r, params, gen)))
            ratio = new_close / close
            aug = series.copy()
            aug["copy"] = np.int16(c)
            for col in ("open", "high", "low"):
                aug[col] = series[col].to_numpy() * ratio
            aug["close"] = new_close
            aug["augmented"] = True
            copies.append(aug)
    return pd.concat(copies, ignore_index=True)
