"""Metrics and comparators: the numbers the Mamba is judged by are right."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from reprolab.models.mamba.baselines import (
    build_recurrent_classifier,
    recurrent_params,
    units_matching,
)
from reprolab.models.mamba.report import bootstrap_accuracy_ci, classification_report


def _data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    y = g.integers(0, 2, n)
    p = np.clip(0.5 + 0.2 * (y - 0.5) + 0.3 * g.standard_normal(n), 0.0, 1.0)
    return y, p


def test_report_matches_sklearn_and_interval_brackets_accuracy() -> None:
    y, p = _data()
    report = classification_report(y, p, 500, np.random.default_rng(1))
    pred = (p > 0.5).astype(int)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert report["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert report["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert report["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert report["brier"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-6)
    assert report["accuracy_ci95_low"] < report["accuracy"] < report["accuracy_ci95_high"]
    # Width of a 95% interval for a proportion near 0.6 at n=2000 is about 2 * 1.96 * 1.1%.
    width = report["accuracy_ci95_high"] - report["accuracy_ci95_low"]
    assert 0.03 < width < 0.055


def test_bootstrap_is_seeded() -> None:
    y, p = _data()
    pred = p > 0.5
    a = bootstrap_accuracy_ci(y, pred, 200, np.random.default_rng(3))
    b = bootstrap_accuracy_ci(y, pred, 200, np.random.default_rng(3))
    assert a == b


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_comparator_size_matches_the_target(kind: str) -> None:
    units = units_matching(kind, 17, 2500)
    model = build_recurrent_classifier(kind, 17, 60, units, seed=0)
    assert model.count_params() == recurrent_params(kind, 17, units)
    neighbours = [recurrent_params(kind, 17, u) for u in (units - 1, units + 1)]
    assert all(abs(model.count_params() - 2500) <= abs(n - 2500) for n in neighbours)


def test_balanced_accuracy_metric_matches_sklearn() -> None:
    from reprolab.models.mamba.keras_metrics import BalancedAccuracy

    y, p = _data(1000, seed=4)
    metric = BalancedAccuracy()
    metric.update_state(y[:400], p[:400])
    metric.update_state(y[400:], p[400:])
    expected = skm.balanced_accuracy_score(y, p > 0.5)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_oracle_gap_is_zero_for_the_oracle_and_negative_for_noise() -> None:
    import pandas as pd

    from reprolab.validate.oracle import oracle_gap

    g = np.random.default_rng(5)
    n = 4000
    keys = pd.DataFrame({"symbol": "S", "date": pd.bdate_range("2020-01-01", periods=n)})
    p = np.clip(0.5 + 0.1 * g.standard_normal(n), 0.01, 0.99)
    labels = keys.assign(label=(g.random(n) < p).astype(np.int8))
    truth = keys.assign(oracle_p_up=p)
    same = oracle_gap(keys.assign(probability=p), labels, truth)
    assert same["accuracy_minus_oracle"] == 0 and same["expected_accuracy_minus_oracle"] == 0
    coin = oracle_gap(keys.assign(probability=g.random(n)), labels, truth)
    assert coin["expected_accuracy_minus_oracle"] < -0.02
    assert abs(coin["expected_accuracy"] - 0.5) < 0.01
