"""The validate stage judges every model against params.validate, from what training wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprolab.core import paths
from reprolab.core.io import write_json, write_parquet
from tests import tiny


def _pipeline_outputs(root: Path, mamba_p: np.ndarray | None, n: int = 500) -> None:
    """What the training stages leave for validate: Mamba test predictions (None: the
    oracle's own) beside the test windows and the oracle, and the PINN's and CET's metrics."""
    keys = pd.DataFrame({"symbol": "S", "date": pd.bdate_range("2020-01-01", periods=n)})
    oracle = np.clip(0.5 + 0.2 * np.random.default_rng(0).standard_normal(n), 0.01, 0.99)
    mamba_p = oracle if mamba_p is None else mamba_p
    labels = keys.assign(label=(oracle > 0.5).astype(np.int8), copy=np.int8(0))
    write_parquet(root / paths.features("markets") / "windows" / "test.parquet", labels)
    write_parquet(
        root / paths.truth("markets") / "part-000.parquet", keys.assign(oracle_p_up=oracle)
    )
    mamba = root / paths.model_dir("mamba")
    write_parquet(mamba / "predictions.parquet", keys.assign(probability=mamba_p))
    write_parquet(
        mamba / "comparators" / "majority_predictions.parquet", keys.assign(probability=0.6)
    )
    pinn = {"price_rel_l2": 5e-5, "price_max_abs_k": 6e-4, "price_mean_abs_k": 1e-5}
    write_json(root / paths.train_metrics("pinn") / "metrics.json", {"domain": pinn, "test": {}})
    cet = {"pass_rate": 0.99, "compression": 0.2}
    write_json(root / paths.train_metrics("cet") / "metrics.json", {"test": {"cet": cet}})


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_goal_is_judged_and_the_failures_are_named(in_tmp: Path) -> None:
    from reprolab.validate.steps import judge

    rng = np.random.default_rng(1)
    _pipeline_outputs(in_tmp, rng.random(500))  # a coin: far below the oracle
    report = judge(tiny.params())
    gaps = report["mamba"]["oracle_gap"]
    assert set(gaps) == {"model", "majority"}
    assert gaps["model"]["expected_accuracy_minus_oracle"] < -0.05
    assert report["mamba"]["goals"]["expected_accuracy_minus_oracle"]["met"] is False
    # the PINN misses its max error; figures it never reported are never "met"
    pinn = report["pinn"]["goals"]
    assert pinn["price_rel_l2"]["met"] and not pinn["price_max_abs_k"]["met"]
    assert pinn["pde_residual_rms"] == {"goal": "<= 0.001", "reached": None, "met": False}
    assert all(g["met"] for g in report["cet"]["goals"].values())
    assert "mamba.expected_accuracy_minus_oracle" in report["failed"]
    assert "pinn.price_max_abs_k" in report["failed"]
    assert not [f for f in report["failed"] if f.startswith("cet.")]


def test_the_oracle_itself_meets_the_mamba_goal_and_goals_come_from_params(in_tmp: Path) -> None:
    from reprolab.validate.steps import judge

    _pipeline_outputs(in_tmp, None)
    strict = judge(tiny.params(validate={"cet": {"pass_rate": ">= 0.995"}}))
    assert strict["mamba"]["goals"]["expected_accuracy_minus_oracle"]["met"] is True
    assert strict["cet"]["goals"]["pass_rate"] == {
        "goal": ">= 0.995",
        "reached": 0.99,
        "met": False,
    }
