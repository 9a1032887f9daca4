"""Data gates: what the split and feature stages promise, checked on what they wrote.

Every figure is a count or a share whose honest value is 0, so each gate in
``params.validate.data`` reads ``"<= 0"``; ``details`` names where a count came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from reprolab.build.markets.features import FEATURE_NAMES, compute_features_frame
from reprolab.core import paths
from reprolab.core.manifest import verified_file
from reprolab.core.registry import DATASETS
from reprolab.core.seeding import rng
from reprolab.core.tables import list_parts, read_parquet

PROBE_SERIES = 4  # market series the look-ahead probe perturbs


def split_table(dataset: str, name: str) -> Path:
    """A split's table: a directory of ``part-*.parquet`` files or one ``<split>.parquet``."""
    root = paths.split(dataset)
    return root / name if (root / name).is_dir() else root / f"{name}.parquet"


def table_files(table: Path) -> list[Path]:
    """The files of a table, checked against their manifest (a lost or extra part fails)."""
    return list_parts(table) if table.is_dir() else [verified_file(table)]


def schema_mismatches(files: Iterable[Path]) -> list[str]:
    """The files whose column names and types differ from the first file's."""
    files = list(files)
    first = pq.read_schema(files[0]).remove_metadata()
    return [str(f) for f in files[1:] if not pq.read_schema(f).remove_metadata().equals(first)]


def missing_share(frame: pd.DataFrame) -> tuple[float, str | None]:
    """The largest NaN share over the numeric columns, and the column that has it."""
    numeric = frame.select_dtypes(include="number")
    if numeric.empty or frame.empty:
        return 0.0, None
    shares = numeric.isna().mean()
    return float(shares.max()), str(shares.idxmax())


def key_overlaps(keys: dict[str, pd.DataFrame]) -> int:
    """Repeats of a key across splits (a key in two splits counts once, in three twice)."""
    both = pd.concat([frame.drop_duplicates() for frame in keys.values()], ignore_index=True)
    return int(both.duplicated().sum())


def embargo_shortfall(splits: dict[str, pd.DataFrame], embargo: int) -> int:
    """Trading days by which the gap between consecutive market splits (their labelled,
    original rows) falls short of ``embargo``, on the calendar of every date seen."""
    calendar = pd.DatetimeIndex(
        np.unique(np.concatenate([s["date"].to_numpy() for s in splits.values()]))
    )
    own = {n: s.loc[~s["context"] & (s["copy"] == 0), "date"] for n, s in splits.items()}
    worst = 0
    for before, after in zip(paths.SPLITS, paths.SPLITS[1:], strict=False):
        if own[before].empty or own[after].empty:
            continue
        last = calendar.get_loc(own[before].max())
        first = calendar.get_loc(own[after].min())
        worst = max(worst, embargo - (first - last - 1))
    return worst


def lookahead_changed_rows(
    split_rows: pd.DataFrame, stored: pd.DataFrame, warmup: int, seed: int
) -> int:
    """Rows <= t of a sample of series whose stored features differ from the features
    recomputed after every raw row past t was perturbed: a feature that reads the future
    (in the code or in the stored table) changes them."""
    keys = ["symbol", "copy", "date"]
    originals = split_rows.loc[split_rows["copy"] == 0]
    symbols = np.unique(originals["symbol"].to_numpy())
    g = rng(seed, "validate", "lookahead")
    chosen = g.choice(symbols, size=min(PROBE_SERIES, len(symbols)), replace=False)
    changed = 0
    for symbol in sorted(chosen):
        series = originals.loc[originals["symbol"] == symbol].reset_index(drop=True)
        # the stored rows of this series, matched by key (a row never stored stays NaN)
        mine = series[keys].merge(stored, on=keys, how="left", validate="one_to_one")
        mine = mine[FEATURE_NAMES].to_numpy(np.float32)
        if len(series) < 3:
            continue
        t = int(g.integers(1, len(series) - 1))
        perturbed = series.copy()
        after = np.arange(len(series)) > t
        scale = np.exp(g.normal(0.0, 0.05, int(after.sum())))
        for col in ("open", "high", "low", "close"):
            perturbed.loc[after, col] = series.loc[after, col].to_numpy() * scale
        perturbed.loc[after, "volume"] = series.loc[after, "volume"].to_numpy() * 2
        fresh = compute_features_frame(perturbed, min_periods=warmup)
        fresh = fresh[FEATURE_NAMES].to_numpy(np.float32)
        same = (fresh == mine) | (np.isnan(fresh) & np.isnan(mine))
        changed += int((~same[: t + 1]).any(axis=1).sum())
    return changed


def data_judgement(seed: int, embargo: int, warmup: int) -> dict[str, Any]:
    """The figures of ``params.validate.data`` and where each count came from."""
    mismatched: list[str] = []
    nan_share, nan_where = 0.0, None
    outside_train: dict[str, int] = {}
    frames: dict[str, dict[str, pd.DataFrame]] = {}
    for dataset in DATASETS:
        tables = {name: split_table(dataset, name) for name in paths.SPLITS}
        mismatched += schema_mismatches(f for t in tables.values() for f in table_files(t))
        frames[dataset] = {name: read_parquet(table) for name, table in tables.items()}
        for name, frame in frames[dataset].items():
            share, column = missing_share(frame)
            if share > nan_share:
                nan_share, nan_where = share, f"{dataset}/{name}.{column}"
            if name != "train" and "copy" in frame.columns:
                outside_train[f"{dataset}/{name}"] = int((frame["copy"] != 0).sum())
    markets = frames["markets"]
    windows = {
        n: read_parquet(paths.features("markets") / "windows" / f"{n}.parquet")
        for n in paths.SPLITS
    }
    for name in ("val", "test"):
        outside_train["markets/" + name] += int(markets[name]["augmented"].sum())
        outside_train[f"markets/windows/{name}"] = int((windows[name]["copy"] != 0).sum())
    overlaps = {
        "markets (symbol, date)": key_overlaps(
            {
                n: s.loc[~s["context"] & (s["copy"] == 0), ["symbol", "date"]]
                for n, s in markets.items()
            }
        ),
        "markets label dates": key_overlaps(
            {n: w.loc[w["copy"] == 0, ["symbol", "label_date"]] for n, w in windows.items()}
        ),
        "options contracts": key_overlaps(
            {n: s[["contract_id"]] for n, s in frames["options"].items()}
        ),
        "contexts programs": key_overlaps(
            {n: s[["program_id"]] for n, s in frames["contexts"].items()}
        ),
        "contexts templates": key_overlaps(
            {n: s[["template_hash"]] for n, s in frames["contexts"].items()}
        ),
    }
    stored = read_parquet(paths.features("markets") / "rows" / "train")
    probe = lookahead_changed_rows(markets["train"], stored, warmup, seed)
    figures = {
        "schema_mismatches": len(mismatched),
        "missing_share": nan_share,
        "split_overlaps": sum(overlaps.values()),
        "augmented_outside_train": sum(outside_train.values()),
        "embargo_shortfall_days": embargo_shortfall(markets, embargo),
        "lookahead_changed_rows": probe,
    }
    details = {
        "schema_mismatched_files": mismatched,
        "missing_share_column": nan_where,
        "split_overlaps": overlaps,
        "augmented_outside_train": outside_train,
    }
    return {"figures": figures, "details": details}
