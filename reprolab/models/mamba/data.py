"""The market data every direction model and comparator sees: one split's rows and targets.

A :class:`MarketSplit` holds a split's feature rows (whole series in ``(symbol, copy, date)``
order: raw OHLCV, the causal features, and for validation and test the earlier rows as
unlabelled ``context``) and its *targets*: the rows whose next-day direction is scored (the
windows of ``data/features/markets/windows``). Every model is judged on exactly these targets;
each reads the inputs that serve it: windows ending at the target (:attr:`MarketSplit.x`), the
target day's features (:attr:`MarketSplit.last_day`), or the whole series up to the target
(:meth:`MarketSplit.series`). Nothing here reads after a target's day for its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from reprolab.core import paths
from reprolab.core.io import read_json
from reprolab.core.resources import MemoryBudget
from reprolab.core.tables import read_parquet
from reprolab.datasets.markets.windows import SERIES_KEYS, apply_scaler, materialize

DATASET = "markets"
SPLITS = ("train", "val", "test")


@dataclass
class Series:
    """One series' rows of a split's table: ``[begin, stop)`` all of them, ``[start, stop)``
    from its first row whose features are all finite (what feature-reading models see)."""

    symbol: str
    copy: int
    begin: int
    start: int
    stop: int


@dataclass
class MarketSplit:
    rows: pd.DataFrame  # whole series, sorted by (symbol, copy, date); OHLCV + features
    targets: pd.DataFrame  # symbol, copy, date, label_date, label, row (index into rows)
    names: list[str]  # feature columns, in model input order
    window: int
    scaler: dict[str, dict[str, float]]
    _cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def y(self) -> np.ndarray:
        return self.targets["label"].to_numpy().astype(np.int8)

    @property
    def target_rows(self) -> np.ndarray:
        return self.targets["row"].to_numpy()

    @cached_property
    def scaled(self) -> np.ndarray:
        """Every row's features scaled with the training scaler, float32 (NaN in warm-up)."""
        values = self.rows[self.names].to_numpy(dtype=np.float64)
        return apply_scaler(values, self.scaler, self.names).astype(np.float32)

    @cached_property
    def x(self) -> np.ndarray:
        """(n, window, n_features): the window ending at each target, scaled."""
        x, _ = materialize(self.rows, self.targets, self.names, self.window, self.scaler)
        return x

    @property
    def last_day(self) -> np.ndarray:
        """(n, n_features): each target day's scaled features."""
        return self.scaled[self.target_rows]

    @property
    def last_up(self) -> np.ndarray:
        """Was each target day's return positive (the persistence rule's input)."""
        close = self.rows["close"].to_numpy()
        rows = self.target_rows
        return close[rows] > close[rows - 1]

    @cached_property
    def series(self) -> list[Series]:
        """The series of the table, each from its first row with every feature finite."""
        keys = self.rows[SERIES_KEYS].to_numpy()
        n = len(keys)
        if n == 0:
            return []
        new = np.ones(n, dtype=bool)
        new[1:] = (keys[1:] != keys[:-1]).any(axis=1)
        starts = np.flatnonzero(new)
        stops = np.append(starts[1:], n)
        finite = np.isfinite(self.scaled).all(axis=1)
        out = []
        for lo, hi in zip(starts, stops, strict=True):
            ok = np.flatnonzero(finite[lo:hi])
            first = lo + int(ok[0]) if len(ok) else hi
            out.append(Series(str(keys[lo, 0]), int(keys[lo, 1]), int(lo), first, int(hi)))
        return out

    def target_series(self) -> list[Series]:
        """The series that hold a target, each cut after its last target row: what a model
        fitted on these targets may read (nothing after the last day it is trained on)."""
        rows = np.sort(self.target_rows)
        out = []
        for s in self.series:
            inside = rows[(rows >= s.begin) & (rows < s.stop)]
            if len(inside):
                out.append(Series(s.symbol, s.copy, s.begin, s.start, int(inside[-1]) + 1))
        return out

    def for_symbol(self, symbol: str) -> MarketSplit:
        """The split restricted to one symbol's rows and targets."""
        keep = (self.rows["symbol"] == symbol).to_numpy()
        index = np.cumsum(keep) - 1
        targets = self.targets.loc[self.targets["symbol"] == symbol].reset_index(drop=True)
        targets["row"] = index[targets["row"].to_numpy()]
        rows = self.rows.loc[keep].reset_index(drop=True)
        return MarketSplit(rows, targets, self.names, self.window, self.scaler)

    def subset(self, mask: np.ndarray) -> MarketSplit:
        """The same rows with only the targets in ``mask``."""
        return MarketSplit(
            self.rows,
            self.targets.loc[mask].reset_index(drop=True),
            self.names,
            self.window,
            self.scaler,
        )

    def rescaled(self, scaler: dict[str, dict[str, float]]) -> MarketSplit:
        return MarketSplit(self.rows, self.targets, self.names, self.window, scaler)


def row_labels(rows: pd.DataFrame) -> np.ndarray:
    """Per row: 1/0 when the next row of the same series is a later, non-context day whose
    close is above/below, -1 when there is no such next row (a series' last row)."""
    keys = rows[SERIES_KEYS].to_numpy()
    close = rows["close"].to_numpy()
    out = np.full(len(rows), -1, dtype=np.int8)
    if len(rows) > 1:
        same = (keys[1:] == keys[:-1]).all(axis=1) & ~rows["context"].to_numpy()[1:]
        up = (close[1:] > close[:-1]).astype(np.int8)
        out[:-1] = np.where(same, up, -1)
    return out


def load_market_splits(
    budget: MemoryBudget, original_only: bool = False
) -> tuple[dict[str, MarketSplit], list[str], int]:
    """The three splits of data/features/markets with the train-only scaler.

    ``original_only`` drops augmented training copies (rows and targets)."""
    feats = paths.features(DATASET)
    registry = read_json(feats / "registry.json")
    scaler = read_json(feats / "scaler.json")
    names = [f["name"] for f in registry["features"]]
    window = int(registry["window"])
    out = {}
    for name in SPLITS:
        rows = read_parquet(feats / "rows" / name)
        targets = read_parquet(feats / "windows" / f"{name}.parquet")
        budget.check(
            len(targets) * window * len(names) * 4 * 2 + rows.memory_usage(deep=False).sum(),
            f"materialising {len(targets):,} {name} windows of {window} x {len(names)}",
        )
        if original_only:
            keep = (rows["copy"] == 0).to_numpy()
            index = np.cumsum(keep) - 1
            rows = rows.loc[keep].reset_index(drop=True)
            targets = targets.loc[targets["copy"] == 0].reset_index(drop=True)
            targets["row"] = index[targets["row"].to_numpy()]
        out[name] = MarketSplit(rows, targets, names, window, scaler)
    return out, names, window
