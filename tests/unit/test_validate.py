"""The validate stage's judgements of the forecasts: the leakage alarm, the paired margin and
the comparison chart (the gates on a whole pipeline: tests/stages/test_validate_gates.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


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
