"""walk_forward on tiny data: every fold predicts only its own test block, for the Mamba and
the comparator train@mamba found best on validation, after an embargo; and never needs
data/truth."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
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

ROOT = Path(__file__).resolve().parents[2]


def _tiny_world(where: Path, **over: dict) -> None:
    """Tiny markets features, the params, and what train@mamba wrote: the comparator it found
    best on the validation split."""
    params = tiny.params(**over)
    tiny.write_params(where, **over)
    with contextlib.chdir(where):
        for step in ("generate", "split_augment", "features"):
            getattr(markets, step)(params, StageResources(step, where / "res", False))
        shutil.rmtree(paths.truth("markets"))  # training must not need it
        write_json(
            paths.train_metrics("mamba") / "metrics.json",
            {"best_comparator_on_validation": "hmm"},
        )


def test_folds_predict_their_own_embargoed_test_blocks(tmp_path: Path) -> None:
    from reprolab.walk_forward.stage import walk_forward

    params = tiny.params()
    _tiny_world(tmp_path)
    with contextlib.chdir(tmp_path):
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


def test_an_interrupted_walk_forward_restarts_when_its_own_code_changed(tmp_path: Path) -> None:
    """walk_forward's checkpoints carry a fingerprint of its own code (its import closure,
    folds.py included), not train@mamba's: after an edit to the fold logic, the interrupted
    fold is trained again from scratch, and the stage says so in one line."""
    world, code = tmp_path / "world", tmp_path / "code"
    world.mkdir()
    _tiny_world(world, train={"mamba": {"epochs": 3, "patience": 3}})  # a checkpoint to resume
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("reprolab", "stages"):
        shutil.copytree(ROOT / package, code / package, ignore=ignore)

    def run(signal_at: str = "") -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.pop("REPROLAB_SIGNAL_AT", None)
        if signal_at:
            env["REPROLAB_SIGNAL_AT"] = signal_at
        return subprocess.run(
            [sys.executable, "-m", "stages.walk_forward"],
            cwd=world,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    interrupted = run("mamba:1")  # fold 0's Mamba, at the start of its second epoch
    assert interrupted.returncode != 0, interrupted.stderr
    checkpoint = world / paths.checkpoints("walk_forward") / "fold_0" / "mamba"
    assert any(checkpoint.iterdir()), "the interrupted fold left no checkpoint"
    folds = code / "reprolab" / "walk_forward" / "folds.py"
    folds.write_text(folds.read_text() + "\n# an edit to the fold logic\n")
    resumed = run()
    assert resumed.returncode == 0, resumed.stderr
    # the logged line (a caller in process also gets it as a RuntimeWarning)
    lines = resumed.stderr.splitlines()
    discarded = [line for line in lines if line.startswith("discarded checkpoint")]
    assert len(discarded) == 1, resumed.stderr
    assert "fold_0" in discarded[0] and "code changed" in discarded[0]
