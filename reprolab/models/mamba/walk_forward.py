"""walk_forward: the Mamba and the best simple comparator over expanding-window folds.

The fixed train/val/test split stays the headline; this stage asks whether the result
holds up through time. Over the original (never augmented) windows of every split, fold k
trains on every window whose label comes at least ``markets.split.embargo`` trading days
before its test block (:mod:`reprolab.models.mamba.folds`), refits the feature scaler on
those training rows only, stops early on the last ``val_share`` of its own training
calendar, and predicts its test block. Never reads data/truth: ``validate`` judges the
predictions against the filter oracle, per fold and pooled.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd

from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.io import read_json, read_parquet, write_json, write_parquet
from reprolab.core.report import classification_report, rounded
from reprolab.core.resources import MemoryBudget, StageResources
from reprolab.core.seeding import int_seed, rng
from reprolab.datasets.markets.windows import fit_scaler, materialize
from reprolab.guard.checkpoint import train_fingerprint
from reprolab.models.mamba.folds import Fold, expanding_folds

MODEL_DIR = paths.model_dir("mamba_walk_forward")
METRICS_DIR = paths.METRICS / "walk_forward"
COMPARATOR = "boosted_trees"  # the strongest simple comparator on the fixed split


def _original_rows_and_windows() -> tuple[list[pd.DataFrame], list[pd.DataFrame], list[str], int]:
    feats = paths.features("markets")
    registry = read_json(feats / "registry.json")
    names = [f["name"] for f in registry["features"]]
    rows, windows = [], []
    for split in paths.SPLITS:
        r = read_parquet(feats / "rows" / split)
        w = read_parquet(feats / "windows" / f"{split}.parquet")
        rows.append(r)
        windows.append(w.loc[w["copy"] == 0].reset_index(drop=True))
    return rows, windows, names, int(registry["window"])


def _fold_data(
    fold: Fold,
    rows: list[pd.DataFrame],
    windows: list[pd.DataFrame],
    names: list[str],
    window: int,
    val_share: float,
) -> dict[str, tuple[np.ndarray, np.ndarray, pd.DataFrame]]:
    """(x, y, windows) of the fold's train, val and test windows, scaled by a scaler fitted
    on the fold's training rows only."""
    cutoff = fold.train_end
    fit_rows = pd.concat(
        [r.loc[(r["copy"] == 0) & ~r["context"] & (r["date"] <= cutoff)] for r in rows]
    )
    scaler = fit_scaler(fit_rows, names)
    xs, ys, ws = [], [], []
    for r, w in zip(rows, windows, strict=True):
        x, y = materialize(r, w, names, window, scaler)
        xs.append(x)
        ys.append(y)
        ws.append(w)
    x, y = np.concatenate(xs), np.concatenate(ys)
    w = pd.concat(ws, ignore_index=True)
    label_dates = w["label_date"].to_numpy().astype("datetime64[D]")
    train = fold.train_mask(label_dates)
    calendar = np.unique(label_dates[train])
    val_start = calendar[int(len(calendar) * (1 - val_share))]
    parts = {
        "train": train & (label_dates < val_start),
        "val": train & (label_dates >= val_start),
        "test": fold.test_mask(label_dates),
    }
    return {k: (x[m], y[m], w.loc[m].reset_index(drop=True)) for k, m in parts.items()}


def walk_forward(params: Params, res: StageResources) -> None:
    from reprolab.models.mamba.baselines import fit_boosted_trees, tabular_probability
    from reprolab.models.mamba.train import (
        Split,
        configure_tensorflow,
        fit_guarded,
        mamba_builder,
        predict_proba,
    )

    configure_tensorflow()
    wf = params.walk_forward
    t = dataclasses.replace(params.train.mamba, epochs=wf.epochs)
    seed = int_seed(params.seed, "walk_forward")
    rows, windows, names, window = _original_rows_and_windows()
    n = sum(len(w) for w in windows)
    MemoryBudget(params.resources.memory_budget_mb).check(
        2 * n * window * len(names) * 4, f"materialising {n:,} windows for walk-forward folds"
    )
    res.add_rows(n)
    label_dates = np.concatenate([w["label_date"].to_numpy() for w in windows])
    folds = expanding_folds(label_dates, wf.folds, params.markets.split.embargo, wf.min_train_share)
    fingerprint = train_fingerprint(params, "mamba")
    predictions, report, seconds = [], {"folds": []}, {}
    for fold in folds:
        data = _fold_data(fold, rows, windows, names, window, wf.val_share)
        splits = {k: Split(x, y, w, np.zeros(len(y), bool)) for k, (x, y, w) in data.items()}
        fold_seed = int_seed(seed, "fold", fold.index)
        start = time.perf_counter()
        model, summary, _ = fit_guarded(
            mamba_builder(t, len(names), window, fold_seed),
            splits,
            t,
            fold_seed,
            f"walk_forward/fold_{fold.index}",
            METRICS_DIR / "live" / f"fold_{fold.index}",
            f"{fingerprint}|walk_forward|{wf}|{fold}",
        )
        seconds[f"fold_{fold.index}_mamba"] = time.perf_counter() - start
        x_test, y_test, w_test = data["test"]
        probs = {"mamba": predict_proba(model, x_test)}
        start = time.perf_counter()
        trees = fit_boosted_trees(data["train"][0], data["train"][1], fold_seed)
        probs[COMPARATOR] = tabular_probability(trees, x_test)
        seconds[f"fold_{fold.index}_{COMPARATOR}"] = time.perf_counter() - start
        entry: dict[str, Any] = {
            "fold": fold.index,
            "train_end": str(fold.train_end),
            "test_start": str(fold.test_start),
            "test_end": str(fold.test_end),
            "windows": {k: len(v[1]) for k, v in data.items()},
            "mamba_training": summary,
        }
        for name, p in probs.items():
            gen = rng(seed, "bootstrap", fold.index, name)
            entry[name] = classification_report(y_test, p, t.bootstrap, gen)
            frame = w_test[["symbol", "date"]].assign(fold=fold.index, model=name, probability=p)
            predictions.append(frame)
        report["folds"].append(entry)
    pooled = pd.concat(predictions, ignore_index=True)
    write_parquet(MODEL_DIR / "predictions.parquet", pooled)
    write_json(METRICS_DIR / "metrics.json", rounded(report))
    write_json(METRICS_DIR / "speed.json", rounded({"seconds": seconds}))
