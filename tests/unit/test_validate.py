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
    drawn = np.random.default_rng(1).random(n) < oracle  # realised labels, noisy as in life
    labels = keys.assign(label=drawn.astype(np.int8), copy=np.int8(0))
    for split in paths.SPLITS:  # the walk-forward folds read every split's windows
        windows = labels if split == "test" else labels.iloc[:0]
        write_parquet(root / paths.features("markets") / "windows" / f"{split}.parquet", windows)
    folds = keys.assign(fold=np.arange(n) * 3 // n, model="mamba", probability=mamba_p)
    write_parquet(root / paths.model_dir("mamba_walk_forward") / "predictions.parquet", folds)
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
    wf = report["walk_forward"]
    assert sorted(wf["folds"]) == ["fold_0", "fold_1", "fold_2"]
    assert sum(f["mamba"]["windows"] for f in wf["folds"].values()) == 500
    assert wf["pooled"]["mamba"]["accuracy"] == gaps["model"]["accuracy"]


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


def _labelled(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    g = np.random.default_rng(seed)
    keys = pd.DataFrame({"symbol": "S", "date": pd.bdate_range("2020-01-01", periods=n)})
    oracle = np.clip(0.5 + 0.1 * g.standard_normal(n), 0.01, 0.99)
    labels = keys.assign(label=(g.random(n) < oracle).astype(np.int8))
    return keys, labels, oracle


def test_the_leakage_alarm_fires_on_a_peek_at_the_label_and_not_on_the_oracle() -> None:
    from reprolab.validate.oracle import above_oracle, window_scores

    keys, labels, oracle = _labelled(5000, 3)
    truth = keys.assign(oracle_p_up=oracle)
    # the oracle plus a little of the realised label: what a leaked feature would give
    leak = np.clip(oracle + 0.15 * (labels["label"].to_numpy() - 0.5), 0, 1)
    gen = np.random.default_rng(0)
    leaked = above_oracle(window_scores(keys.assign(probability=leak), labels, truth), 1000, gen)
    honest = above_oracle(window_scores(keys.assign(probability=oracle), labels, truth), 1000, gen)
    assert leaked["alarm"] and leaked["ci95_low"] > 0
    assert not honest["alarm"] and honest["difference"] == 0.0


def test_the_paired_margin_has_an_interval_around_the_mean_difference() -> None:
    from reprolab.validate.oracle import paired_interval

    diff = np.random.default_rng(4).normal(0.01, 0.1, 4000)
    m = paired_interval(diff, 1000, np.random.default_rng(0))
    assert m["ci95_low"] < m["difference"] < m["ci95_high"]
    assert m["ci95_low"] > 0 and m["ci95_high"] - m["ci95_low"] < 0.02


def test_a_leaking_model_fails_validate_with_its_goal_named(in_tmp: Path) -> None:
    from reprolab.validate.steps import judge

    _pipeline_outputs(in_tmp, None)
    truth = pd.read_parquet(in_tmp / paths.truth("markets") / "part-000.parquet")
    windows = pd.read_parquet(in_tmp / paths.features("markets") / "windows" / "test.parquet")
    peek = np.where(windows["label"].to_numpy() == 1, 0.99, 0.01)  # the label itself
    write_parquet(
        in_tmp / paths.model_dir("mamba") / "predictions.parquet",
        truth[["symbol", "date"]].assign(probability=peek),
    )
    report = judge(tiny.params())
    assert report["mamba"]["above_oracle"]["model"]["alarm"]
    assert "mamba.models_above_oracle" in report["failed"]


def test_the_comparison_chart_lists_every_model_best_first(tmp_path: Path) -> None:
    import json

    from reprolab.validate.chart import comparison_rows, write_comparison

    gap = {"expected_accuracy_minus_oracle": -0.004, "accuracy_minus_oracle": -0.01}
    gaps = {
        "model": {**gap, "accuracy": 0.55},
        "majority": {**gap, "expected_accuracy_minus_oracle": -0.05, "accuracy": 0.5},
        "boosted_trees": {**gap, "expected_accuracy_minus_oracle": -0.006, "accuracy": 0.54},
    }
    rows = comparison_rows(gaps)
    assert [r["model"] for r in rows] == ["mamba", "boosted_trees", "majority"]
    assert rows[0]["expected_gap_pt"] == -0.4
    write_comparison(rows, tmp_path / "c.json", tmp_path / "c.png")
    assert json.loads((tmp_path / "c.json").read_text()) == rows
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
