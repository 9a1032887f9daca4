"""walk_forward on tiny data: every fold predicts only its own test block, for the Mamba and
the comparator train@mamba found best on validation, after an embargo; and never needs
data/truth."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprolab.build.markets import stage as markets
from reprolab.core import paths
from reprolab.core.io import read_json, write_json
from reprolab.core.resources import StageResources
from tests import tiny

pytestmark = pytest.mark.slow


def test_folds_predict_their_own_embargoed_test_blocks(tmp_path: Path) -> None:
    from reprolab.walk_forward.stage import walk_forward

    params = tiny.params()
    with contextlib.chdir(tmp_path):
        for step in ("generate", "split_augment", "features"):
            getattr(markets, step)(params, StageResources(step, tmp_path / "res", False))
        shutil.rmtree(paths.truth("markets"))  # training must not need it
        # what train@mamba wrote: the comparator it found best on the validation split
        write_json(
            paths.train_metrics("mamba") / "metrics.json",
            {"best_comparator_on_validation": "hmm"},
        )
        walk_forward(params, StageResources("walk_forward", tmp_path / "res", False))
        predictions = pd.read_parquet(paths.model_dir("mamba_walk_forward") / "predictions.parquet")
        report = read_json(paths.METRICS / "walk_forward" / "metrics.json")
        windows = pd.concat(
            [
                pd.read_parquet(paths.features("markets") / "windows" / f"{s}.parquet")
                for s in paths.SPLITS
            ]
        )
    calendar = np.unique(windows["label_date"].to_numpy().astype("datetime64[D]"))
    folds = report["folds"]
    assert [f["fold"] for f in folds] == list(range(params.walk_forward.folds))
    assert set(predictions["model"]) == {"mamba", "hmm"} and report["comparator"] == "hmm"
    for f in folds:
        start, end = np.datetime64(f["test_start"]), np.datetime64(f["test_end"])
        gap = np.searchsorted(calendar, start) - np.searchsorted(
            calendar, np.datetime64(f["train_end"])
        )
        assert gap >= params.markets.split.embargo + 1, f
        assert f["windows"]["train"] > 0 and f["windows"]["val"] > 0 and f["windows"]["test"] > 0
        mine = predictions[predictions["fold"] == f["fold"]]
        label_dates = windows.merge(
            mine[["symbol", "date"]].drop_duplicates(), on=["symbol", "date"]
        )
        assert label_dates["label_date"].between(start, end).all()
        per_model = mine.groupby("model")[["symbol", "date"]].apply(
            lambda d: d.to_records(index=False).tolist()
        )
        assert per_model["mamba"] == per_model["hmm"]  # the same windows
        assert len(mine) == 2 * f["windows"]["test"]
        assert f["mamba"]["n"] == f["windows"]["test"]
