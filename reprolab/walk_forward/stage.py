"""walk_forward: the Mamba and the best comparator of the validation split, through time.

The fixed train/val/test split stays the headline; this stage asks whether the result
holds up through time. Every series is read from the test split's table, which holds each
symbol's whole history (its earlier rows as context). The targets are the original (never
augmented) windows of every split. Fold k trains on every target whose label comes at least
``markets.split.embargo`` trading days before its test block
(:mod:`reprolab.walk_forward.folds`), refits the feature scaler on the rows up to its
training cutoff only, stops early and chooses on the last ``val_share`` of its own training
calendar, and predicts its test block. The comparator is the one ``train@mamba`` found best
on the validation split (lowest log loss, ``best_comparator_on_validation``): chosen on
validation, never on a test block. Never reads data/truth: ``validate`` judges the
predictions against the filter oracle, per fold and pooled.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.errors import DataQualityError
from reprolab.core.io import read_json, rounded, write_json
from reprolab.core.resources import MemoryBudget, StageResources
from reprolab.core.seeding import int_seed, rng
from reprolab.core.tables import write_parquet
from reprolab.datasets.markets.windows import fit_scaler
from reprolab.guard.common.checkpoint import stage_fingerprint
from reprolab.models.mamba.comparators import make_comparator
from reprolab.models.mamba.data import MarketSplit, load_market_splits
from reprolab.models.mamba.fitting import FitContext, configure_tensorflow
from reprolab.models.mamba.forecaster import MambaForecaster
from reprolab.models.mamba.report import classification_report
from reprolab.walk_forward.folds import Fold, expanding_folds

MODEL_DIR = paths.model_dir("mamba_walk_forward")
METRICS_DIR = paths.METRICS / "walk_forward"
CHECKPOINTS = paths.checkpoints("walk_forward")
TRAIN_METRICS = paths.train_metrics("mamba") / "metrics.json"


def whole_history(budget: MemoryBudget) -> MarketSplit:
    """The test split's table (every symbol's whole history) with the original targets of
    all three splits mapped onto its rows."""
    data, _, _ = load_market_splits(budget, original_only=True)
    table = data["test"]
    rows = table.rows
    position = pd.Series(
        np.arange(len(rows)), index=pd.MultiIndex.from_frame(rows[["symbol", "date"]])
    )
    targets = []
    for split in data.values():
        t = split.targets.copy()
        index = position.reindex(pd.MultiIndex.from_frame(t[["symbol", "date"]])).to_numpy()
        if np.isnan(index).any():
            raise DataQualityError(
                "walk_forward: a target's day is missing from the test split's history"
            )
        t["row"] = index.astype(np.int64)
        targets.append(t)
    all_targets = pd.concat(targets, ignore_index=True).sort_values("row", kind="stable")
    return MarketSplit(
        rows, all_targets.reset_index(drop=True), table.names, table.window, table.scaler
    )


def fold_splits(history: MarketSplit, fold: Fold, val_share: float) -> dict[str, MarketSplit]:
    """The fold's train, val and test targets over the whole history, every row scaled by a
    scaler fitted on the rows up to the fold's training cutoff only."""
    rows = history.rows
    fit_rows = rows.loc[rows["date"].to_numpy() <= np.datetime64(fold.train_end)]
    scaled = history.rescaled(fit_scaler(fit_rows, history.names))
    label_dates = history.targets["label_date"].to_numpy().astype("datetime64[D]")
    train = fold.train_mask(label_dates)
    calendar = np.unique(label_dates[train])
    val_start = calendar[int(len(calendar) * (1 - val_share))]
    masks = {
        "train": train & (label_dates < val_start),
        "val": train & (label_dates >= val_start),
        "test": fold.test_mask(label_dates),
    }
    return {k: scaled.subset(m) for k, m in masks.items()}


def chosen_comparator() -> str:
    """The comparator train@mamba found best on the validation split."""
    return str(read_json(TRAIN_METRICS)["best_comparator_on_validation"])


def walk_forward(params: Params, res: StageResources) -> None:
    configure_tensorflow()
    wf = params.walk_forward
    t = params.train.mamba  # the headline's configuration, unchanged
    seed = int_seed(params.seed, "walk_forward")
    history = whole_history(MemoryBudget(params.resources.memory_budget_mb))
    res.add_rows(len(history))
    label_dates = history.targets["label_date"].to_numpy()
    folds = expanding_folds(label_dates, wf.folds, params.markets.split.embargo, wf.min_train_share)
    comparator = chosen_comparator()
    fingerprint = stage_fingerprint(
        params,
        model="mamba",
        dataset="markets",
        inputs=[paths.features("markets")],
        modules=["stages.walk_forward", "reprolab.walk_forward.stage"],
        sections={"walk_forward": wf},
    )
    fingerprint = f"{fingerprint}|{comparator}"
    predictions, report, seconds = [], {"comparator": comparator, "folds": []}, {}
    for fold in folds:
        data = fold_splits(history, fold, wf.val_share)
        fold_seed = int_seed(seed, "fold", fold.index)
        ctx = FitContext(
            t,
            fold_seed,
            CHECKPOINTS / f"fold_{fold.index}",
            METRICS_DIR / "live" / f"fold_{fold.index}",
            f"{fingerprint}|{wf}|{fold}",
        )
        mamba = MambaForecaster(ctx)
        entry: dict[str, Any] = {
            "fold": fold.index,
            "train_end": str(fold.train_end),
            "test_start": str(fold.test_start),
            "test_end": str(fold.test_end),
            "windows": {k: len(v) for k, v in data.items()},
        }
        test = data["test"]
        for i in range(2):
            # the comparator is built after the Mamba is fitted: the recurrent ones match
            # its parameter count
            model = mamba if i == 0 else make_comparator(comparator, ctx, mamba.info["params"])
            start = time.perf_counter()
            model.fit(data["train"], data["val"])
            p = model.predict_proba(test)
            seconds[f"fold_{fold.index}_{model.name}"] = time.perf_counter() - start
            gen = rng(seed, "bootstrap", fold.index, model.name)
            entry[model.name] = classification_report(test.y, p, t.bootstrap, gen)
            entry[f"{model.name}_info"] = model.info
            frame = test.targets[["symbol", "date"]].assign(
                fold=fold.index, model=model.name, probability=p
            )
            predictions.append(frame)
        report["folds"].append(entry)
    pooled = pd.concat(predictions, ignore_index=True)
    write_parquet(MODEL_DIR / "predictions.parquet", pooled)
    write_json(METRICS_DIR / "metrics.json", rounded(report))
    write_json(METRICS_DIR / "speed.json", rounded({"seconds": seconds}))
