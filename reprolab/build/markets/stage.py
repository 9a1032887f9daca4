"""The markets steps: generate -> split_augment -> features -> data_metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprolab.build.markets.features import (
    FEATURE_NAMES,
    FEATURES,
    OHLCV,
    compute_features_frame,
)
from reprolab.build.markets.quality import check_ohlcv
from reprolab.build.markets.simulate import (
    BYTES_PER_SYMBOL_DAY,
    OBSERVABLE_COLUMNS,
    OBSERVABLE_SCHEMA,
    TRUTH_COLUMNS,
    TRUTH_SCHEMA,
    generate_markets,
    oracle_log_loss,
)
from reprolab.build.markets.split import augment_train, chronological_calendar, split_markets
from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.errors import DataQualityError
from reprolab.core.io import read_json, write_json
from reprolab.core.manifest import sealed_dir, sealed_dirs
from reprolab.core.paths import SPLITS
from reprolab.core.resources import MemoryBudget, StageResources
from reprolab.core.tables import check_finite, list_parts, part_name, read_parquet, write_parquet
from reprolab.datasets.markets.windows import SERIES_KEYS, fit_scaler, make_windows

DATASET = "markets"
ROW_KEYS = ["symbol", "copy", "date"]  # with context, augmented, the raw OHLCV and the features


def generate(params: Params, res: StageResources) -> None:
    g = params.markets.generate
    n_parts = -(-g.n_symbols // g.symbols_per_part)
    per_part = min(g.symbols_per_part, g.n_symbols)
    MemoryBudget(params.resources.memory_budget_mb).check(
        per_part * g.n_days * BYTES_PER_SYMBOL_DAY * 3,
        f"generating {per_part} symbols x {g.n_days} days per part "
        "(markets.generate.symbols_per_part)",
    )
    chunks = generate_markets(g, params.seed)
    with sealed_dirs(
        f"generate@{DATASET}",
        (paths.raw(DATASET), OBSERVABLE_SCHEMA),
        (paths.truth(DATASET), TRUTH_SCHEMA),
    ) as (raw, truth):
        bar = res.progress(chunks, n_parts)
        for i, (observed, hidden) in enumerate(bar):
            write_parquet(raw / part_name(i), observed)
            write_parquet(truth / part_name(i), hidden)
            res.add_rows(len(observed))


def split_augment(params: Params, res: StageResources) -> None:
    raw_parts = list_parts(paths.raw(DATASET))
    calendar = None
    with sealed_dir(paths.split(DATASET), f"split_augment@{DATASET}") as out:
        for i, part in enumerate(res.progress(raw_parts, len(raw_parts))):
            observed = read_parquet(part)
            source = str(part)
            missing = [c for c in OBSERVABLE_COLUMNS if c not in observed.columns]
            if missing:
                raise DataQualityError(f"{source}: missing column(s) {missing}")
            check_ohlcv(observed, source)
            dates = pd.DatetimeIndex(np.unique(observed["date"].to_numpy()))
            if calendar is None:
                calendar = chronological_calendar(dates, params.markets.split)
            elif not dates.equals(calendar.dates):
                raise DataQualityError(f"{source}: dates differ from the first part's calendar")
            parts = split_markets(observed, calendar)
            augmented = augment_train(parts["train"], params.markets.split.augment, params.seed)
            parts["train"] = pd.concat([parts["train"], augmented], ignore_index=True)
            parts["train"] = parts["train"].sort_values(
                ["symbol", "copy", "date"], kind="stable", ignore_index=True
            )
            for name in SPLITS:
                write_parquet(out / name / part_name(i), parts[name])
            res.add_rows(len(observed))
        assert calendar is not None
        write_json(out / "calendar.json", calendar.to_json())


def _warmup_nan_share(table: pd.DataFrame) -> pd.DataFrame:
    """Rows after each series' warm-up prefix (the rows before its first all-finite row)."""
    finite = np.isfinite(table[FEATURE_NAMES].to_numpy(dtype=np.float64)).all(axis=1)
    seen = pd.Series(finite).groupby([table[k] for k in SERIES_KEYS], sort=False).cummax()
    return table.loc[seen.to_numpy()]


def features(params: Params, res: StageResources) -> None:
    f = params.markets.features
    split_dir = paths.split(DATASET)
    train_rows = []
    inputs = {name: list_parts(split_dir / name) for name in SPLITS}  # all checked up front
    with sealed_dir(paths.features(DATASET), f"features@{DATASET}") as out:
        for name, parts in inputs.items():
            windows, offset = [], 0
            for i, part in enumerate(res.progress(parts, len(parts), name)):
                frame = read_parquet(part)
                check_ohlcv(frame, str(part))
                feats = compute_features_frame(frame, min_periods=f.warmup)
                table = pd.concat(
                    [frame[[*ROW_KEYS, "context", "augmented", *OHLCV]], feats],
                    axis=1,
                )
                check_finite(
                    _warmup_nan_share(table),
                    FEATURE_NAMES,
                    f"{part} features",
                    f.max_nan_share,
                    limit_key="markets.features.max_nan_share",
                )
                w = make_windows(table, FEATURE_NAMES, f.window)
                w["row"] += offset
                windows.append(w)
                offset += len(table)
                if name == "train":
                    train_rows.append(table.loc[table["copy"] == 0, FEATURE_NAMES])
                stored = table.astype({c: np.float32 for c in FEATURE_NAMES})
                write_parquet(out / "rows" / name / part_name(i), stored)
                res.add_rows(len(table))
            all_windows = pd.concat(windows, ignore_index=True)
            if all_windows.empty:
                raise DataQualityError(
                    f"{split_dir / name}: no complete window of {f.window} rows after warm-up; "
                    "lengthen markets.generate.n_days or shorten markets.features.window"
                )
            write_parquet(out / "windows" / f"{name}.parquet", all_windows)
        # Fit on original training rows only: validation and test never shape the scaler.
        write_json(out / "scaler.json", fit_scaler(pd.concat(train_rows), FEATURE_NAMES))
        write_json(out / "registry.json", registry(params))


def registry(params: Params) -> dict[str, object]:
    f = params.markets.features
    return {
        "dataset": DATASET,
        "features": FEATURES,
        "normalisation": (
            f"every raw indicator is z-scored with its expanding mean and std over rows <= t "
            f"(NaN until {f.warmup} valid values), per series"
        ),
        "scaler": "scaler.json: per-feature mean/std fitted on original training rows only",
        "window": f.window,
        "label": "1 if close[t+1] > close[t] else 0, for the window ending at row t",
        "layout": {
            "rows/<split>/part-*.parquet": (
                "raw OHLCV and feature rows per series (context rows included)"
            ),
            "windows/<split>.parquet": "one row per window: its last row index and label",
        },
    }


def data_metrics(params: Params, res: StageResources) -> None:
    feats = paths.features(DATASET)
    truth = read_parquet(paths.truth(DATASET))
    missing = [c for c in TRUTH_COLUMNS if c not in truth.columns]
    if missing:
        raise DataQualityError(f"{paths.truth(DATASET)}: missing column(s) {missing}")
    calendar = read_json(paths.split(DATASET) / "calendar.json")
    report: dict[str, object] = {"calendar": calendar}
    for name in SPLITS:
        windows = read_parquet(feats / "windows" / f"{name}.parquet")
        original = windows.loc[windows["copy"] == 0]
        joined = original.merge(truth, on=["symbol", "date"], how="left", validate="many_to_one")
        if joined["oracle_p_up"].isna().any():
            raise DataQualityError(f"{paths.truth(DATASET)}: no oracle row for some {name} window")
        p = joined["oracle_p_up"].to_numpy()
        y = joined["label"].to_numpy().astype(bool)
        report[name] = {
            "windows": len(windows),
            "windows_original": len(original),
            "windows_augmented": int(windows["augmented"].sum()),
            "symbols": int(original["symbol"].nunique()),
            "up_share": round(float(y.mean()), 6),
            "oracle_accuracy": round(float(((p > 0.5) == y).mean()), 6),
            "oracle_expected_accuracy": round(float(np.maximum(p, 1 - p).mean()), 6),
            "oracle_log_loss": round(oracle_log_loss(p, y), 6),
        }
        res.add_rows(len(windows))
    write_json(paths.data_metrics(DATASET), report)
