"""The comparator interface: one protocol for every rival, fitted on training targets only,
choosing on validation only; the HMM's fit never reads a validation or test row."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprolab.build.markets.simulate import Process, simulate_symbols
from reprolab.models.mamba.comparators import (
    COMPARATORS,
    Hmm,
    Majority,
    Persistence,
    make_comparator,
)
from reprolab.models.mamba.data import MarketSplit, row_labels
from reprolab.models.mamba.fitting import FitContext
from tests.tiny import repo_params

N_DAYS = 700


def _table(n_symbols: int = 4, seed: int = 5) -> pd.DataFrame:
    process = Process.from_params(repo_params().markets.generate)
    symbols = [f"S{i}" for i in range(n_symbols)]
    sim = simulate_symbols(symbols, N_DAYS, process, seed, 100.0)
    frame = pd.DataFrame(
        {
            "symbol": np.repeat(symbols, N_DAYS),
            "copy": np.int16(0),
            "date": np.tile(pd.bdate_range("2015-01-05", periods=N_DAYS).values, n_symbols),
            "context": False,
            **{c: sim[c].ravel().astype(np.float64) for c in ("open", "high", "low", "close")},
            "volume": sim["volume"].ravel().astype(np.float64),
        }
    )
    frame["f"] = np.log(frame["volume"])
    return frame


def _split(rows: pd.DataFrame, lo: int, hi: int) -> MarketSplit:
    """Targets: every labelled day with day index in [lo, hi); rows end at ``hi`` (+1 for
    the label) and carry everything before as context, like the pipeline's val/test files."""
    day = np.tile(np.arange(N_DAYS), rows["symbol"].nunique())
    part = rows.loc[day <= hi].reset_index(drop=True)
    part["context"] = day[day <= hi] < lo
    labels = row_labels(part.assign(context=False))
    d = np.tile(np.arange(hi + 1), rows["symbol"].nunique())
    rows_idx = np.flatnonzero((d >= max(lo, 2)) & (d < hi) & (labels >= 0))
    targets = pd.DataFrame(
        {
            "symbol": part["symbol"].to_numpy()[rows_idx],
            "copy": np.int16(0),
            "date": part["date"].to_numpy()[rows_idx],
            "label_date": part["date"].to_numpy()[rows_idx + 1],
            "label": labels[rows_idx],
            "row": rows_idx,
        }
    )
    return MarketSplit(part, targets, ["f"], 5, {"f": {"mean": 0.0, "std": 1.0}})


def _ctx(tmp_path: Path, **hmm) -> FitContext:
    t = repo_params().train.mamba
    if hmm:
        t = replace(t, hmm=replace(t.hmm, **hmm))
    return FitContext(t, 7, tmp_path / "ck", None, "test")


def test_every_registered_comparator_has_a_name_and_is_found_by_it(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    names = [factory(ctx, 100).name for factory in COMPARATORS.values()]
    assert len(set(names)) == len(names) and "hmm" in names and ctx.t.comparator in names
    for name in names:
        assert make_comparator(name, ctx, 100).name == name
    with pytest.raises(ValueError, match="no comparator"):
        make_comparator("oracle", ctx, 100)


def test_majority_and_persistence_are_calibrated_rules(tmp_path: Path) -> None:
    rows = _table(2)
    train, val = _split(rows, 0, 300), _split(rows, 300, 400)
    majority, persistence = Majority(_ctx(tmp_path)), Persistence(_ctx(tmp_path))
    for model in (majority, persistence):
        model.fit(train, val)
    assert majority.predict_proba(val).tolist() == [float(np.mean(train.y))] * len(val)
    hit = float(np.mean(train.last_up == train.y.astype(bool)))
    p = persistence.predict_proba(val)
    np.testing.assert_array_equal(p, np.where(val.last_up, hit, 1 - hit))


def test_the_hmm_fit_reads_no_row_after_the_last_training_target(tmp_path: Path) -> None:
    """Validation and test rows come after the training targets: perturbing them (and the
    training split's own rows after its last target) leaves the fitted filter unchanged
    when there is no choice to make, and with a choice only the choice can move."""
    rows = _table()
    train, val = _split(rows, 0, 400), _split(rows, 450, 550)
    poisoned = rows.copy()
    day = np.tile(np.arange(N_DAYS), rows["symbol"].nunique())
    later = day > 400
    g = np.random.default_rng(0)
    for c in ("open", "high", "low", "close"):
        poisoned.loc[later, c] = poisoned.loc[later, c] * np.exp(
            0.1 * g.standard_normal(later.sum())
        )
    poisoned[["open", "high", "low", "close"]] = np.maximum(
        poisoned[["open", "high", "low", "close"]], 1e-3
    )
    hi = poisoned[["open", "close", "high"]].max(axis=1)
    lo = poisoned[["open", "close", "low"]].min(axis=1)
    poisoned["high"], poisoned["low"] = hi, lo
    a, b = Hmm(_ctx(tmp_path, states=[3])), Hmm(_ctx(tmp_path, states=[3]))
    a.fit(train, val)
    b.fit(_split(poisoned, 0, 400), _split(poisoned, 450, 550))
    for field in ("start", "transition", "means", "covars"):
        np.testing.assert_array_equal(getattr(a.params, field), getattr(b.params, field))
    # the forecast at a validation target reads that series up to the target only
    p = a.predict_proba(val)
    assert p.shape == (len(val),) and np.isfinite(p).all() and ((p > 0) & (p < 1)).all()


def test_the_hmm_chooses_its_state_count_on_validation_and_says_so(tmp_path: Path) -> None:
    rows = _table()
    model = Hmm(_ctx(tmp_path, states=[1, 3]))
    model.fit(_split(rows, 0, 400), _split(rows, 450, 650))
    candidates = model.info["selection"]["candidates"]
    assert [c["n_states"] for c in candidates] == [1, 3]
    best = min(candidates, key=lambda c: c["validation_log_loss"])
    assert model.params.n_states == best["n_states"] == 3  # one state cannot see regimes
