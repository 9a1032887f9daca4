"""The sequence Mamba: causal (a prediction at t ignores days after t), its one-day step path
equals the whole-series pass, and training chunks score every labelled day once warm."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprolab.core.errors import ValidationError
from reprolab.models.mamba import sequences as sq
from reprolab.models.mamba.data import Series
from tests.tiny import repo_params

F = 5


def _model(**arch):
    from reprolab.models.mamba.model import build_mamba_sequence

    t = replace(repo_params().train.mamba, d_model=8, d_state=4, **arch)
    return build_mamba_sequence(F, t, seed=3, expert_index=[0, 2])


@pytest.fixture(scope="module")
def model():
    return _model()


@settings(max_examples=8, deadline=None)
@given(t=st.integers(0, 38), seed=st.integers(0, 2**31 - 1))
def test_a_prediction_at_t_is_unchanged_by_days_after_t(model, t: int, seed: int) -> None:
    g = np.random.default_rng(seed)
    x = g.standard_normal((2, 40, F)).astype(np.float32)
    y = x.copy()
    y[:, t + 1 :] = g.standard_normal(y[:, t + 1 :].shape) * 10
    a = model.predict(x, verbose=0)[..., 0]
    b = model.predict(y, verbose=0)[..., 0]
    np.testing.assert_array_equal(a[:, : t + 1], b[:, : t + 1])
    if t < 38:
        assert not np.allclose(a[:, t + 1 :], b[:, t + 1 :])  # the probe does reach the model


@pytest.mark.parametrize("arch", [{}, {"experts": 0}, {"norm": "rms", "n_layers": 2, "experts": 2}])
def test_the_step_path_equals_the_whole_series_pass(arch: dict) -> None:
    from reprolab.serve.mamba_step import MambaStepper

    model = _model(**arch)
    x = np.random.default_rng(0).standard_normal((3, 300, F)).astype(np.float32)
    whole = model.predict(x, verbose=0)[..., 0]
    stepped = MambaStepper(model).run(x)
    assert np.max(np.abs(whole - stepped)) <= 1e-6


def _series(lengths: list[int], warmup: int = 0) -> list[Series]:
    out, start = [], 0
    for i, n in enumerate(lengths):
        out.append(Series(f"S{i}", 0, start, start + warmup, start + n))
        start += n
    return out


def test_chunks_score_every_labelled_day_after_the_burn_in_and_nothing_beyond() -> None:
    series = _series([100, 37], warmup=5)
    n = 137
    scaled = np.arange(n, dtype=np.float32)[:, None].repeat(2, axis=1)
    labels = np.full(n, -1, np.int8)
    labels[10:90] = 1  # series 0: rows 90..99 are not training targets
    labels[105:130] = 0
    x, y = sq.training_chunks(scaled, series, labels, length=32, stride=16, burn_in=8)
    assert x.shape[1:] == (32, 2) and y.shape == x.shape[:2]
    scored = x[..., 0][y >= 0].astype(int)
    assert set(scored) == set(range(10, 90)) | set(range(105, 130))  # every target scored
    assert scored.max() < 130 and not ((x[..., 0] >= 90) & (x[..., 0] < 100)).any()  # cut
    for xi, yi in zip(x, y, strict=True):
        first = int(xi[0, 0])
        if first not in (5, 105):  # not a series' first chunk: the burn-in carries no loss
            assert (yi[:8] == -1).all()
    # the short second series (25 rows to its last target) is one chunk padded at its end
    short = [xi for xi in x if xi[0, 0] == 105]
    assert len(short) == 1 and (short[0][25:] == 0).all()


def test_burn_in_must_be_shorter_than_the_chunk() -> None:
    with pytest.raises(ValidationError, match="burn_in"):
        sq.training_chunks(np.zeros((10, 1)), _series([10]), np.ones(10, np.int8), 4, 2, 4)


def test_full_series_positions_point_at_the_target_rows() -> None:
    series = _series([50, 40], warmup=3)
    scaled = np.arange(90, dtype=np.float32)[:, None]
    x, _ = sq.full_series(scaled, series)
    rows = np.array([3, 49, 53, 89])
    which, day = sq.positions(series, rows)
    np.testing.assert_array_equal(x[which, day, 0], rows)
    with pytest.raises(ValidationError):
        sq.positions(series, np.array([51]))  # before series 1's first complete row


def test_the_mixture_head_mixes_experts_on_todays_return_by_the_state() -> None:
    """With the gate's weights zeroed the head is the plain mean of its experts, each a
    logistic function of the expert columns alone: the state only chooses the mixture."""
    model = _model(experts=2)
    head = model.get_layer("head")
    head.gate_kernel.assign(np.zeros(head.gate_kernel.shape))
    head.expert_kernel.assign(np.array([[1.0, -2.0], [0.5, 0.0]]))
    head.expert_bias.assign(np.array([0.1, -0.3]))
    x = np.random.default_rng(1).standard_normal((2, 20, F)).astype(np.float32)
    e = x[..., [0, 2]].astype(np.float64)
    logits = e @ np.array([[1.0, -2.0], [0.5, 0.0]]) + np.array([0.1, -0.3])
    expected = (1 / (1 + np.exp(-logits))).mean(axis=-1)
    np.testing.assert_allclose(model.predict(x, verbose=0)[..., 0], expected, atol=1e-6)


def test_forecast_targets_ride_along_the_chunks_and_are_nan_on_padding() -> None:
    series = _series([60, 20])  # the short series is one chunk, padded at its end
    scaled = (np.arange(80, dtype=np.float32) + 1)[:, None]  # 0 only on padding
    labels = np.full(80, -1, np.int8)
    labels[:50] = 1
    labels[60:79] = 0
    forecast = (np.arange(80, dtype=np.float32) + 1000)[:, None]
    x, y = sq.training_chunks(scaled, series, labels, 32, 32, 4, forecast)
    plain_x, plain_y = sq.training_chunks(scaled, series, labels, 32, 32, 4)
    np.testing.assert_array_equal(x, plain_x)
    np.testing.assert_array_equal(y[..., 0], plain_y)  # the labels, burn-in masked alike
    assert y.shape == (*x.shape[:2], 2)
    real = x[..., 0] > 0
    np.testing.assert_array_equal(y[..., 1][real], x[..., 0][real] - 1 + 1000)  # own row's
    assert np.isnan(y[..., 1][~real]).all() and (~real).any()


def _market_split(n_days: int = 30):
    import pandas as pd

    from reprolab.models.mamba.data import MarketSplit

    dates = pd.bdate_range("2020-01-01", periods=n_days)
    rows = pd.DataFrame(
        {
            "symbol": "S0",
            "copy": 0,
            "date": dates,
            "close": np.arange(n_days, dtype=float) + 100,
            "a": np.arange(n_days, dtype=float),
            "b": -np.arange(n_days, dtype=float),
        }
    )
    keep = np.arange(5, n_days - 1)
    targets = pd.DataFrame(
        {
            "symbol": "S0",
            "copy": 0,
            "date": dates[keep],
            "label_date": dates[keep + 1],
            "label": 1,
            "row": keep,
        }
    )
    scaler = {c: {"mean": 0.0, "std": 1.0} for c in ("a", "b")}
    return MarketSplit(rows, targets, ["a", "b"], 3, scaler)


def test_next_day_targets_are_the_label_days_inputs_and_nothing_else() -> None:
    split = _market_split()
    labels = sq.target_labels(len(split.rows), split.target_rows, split.y)
    out = sq.next_day(split, ["b"], labels)
    rows = split.target_rows
    np.testing.assert_array_equal(out[rows, 0], -(rows + 1))  # the next day's own value
    others = np.setdiff1d(np.arange(len(out)), rows)
    assert np.isnan(out[others]).all()
    split.targets.loc[3, "label_date"] = split.targets.loc[5, "label_date"]  # not the next row
    with pytest.raises(ValidationError, match="label day"):
        sq.next_day(split, ["b"], labels)


def test_the_forecasting_loss_is_the_cross_entropy_where_targets_are_missing() -> None:
    """Validation targets are NaN: early stopping and the best epoch see the labels alone;
    on training days the squared error of each next-day forecast is added, weighted."""
    from reprolab.models.mamba.keras_metrics import ForecastingLoss, MaskedBinaryCrossentropy

    g = np.random.default_rng(2)
    label = np.where(g.random((2, 7)) < 0.2, -1, g.integers(0, 2, (2, 7))).astype(np.float32)
    p = g.uniform(0.1, 0.9, (2, 7)).astype(np.float32)
    forecast = g.standard_normal((2, 7, 2)).astype(np.float32)
    target = g.standard_normal((2, 7, 2)).astype(np.float32)
    target[0, 1, 1] = np.nan  # a missing target counts nowhere
    y_pred = np.concatenate([p[..., None], forecast], -1)
    bce = float(MaskedBinaryCrossentropy()(label, p))
    missing = np.concatenate([label[..., None], np.full_like(target, np.nan)], -1)
    assert float(ForecastingLoss(3.0)(missing, y_pred)) == pytest.approx(bce, abs=1e-6)
    y_true = np.concatenate([label[..., None], target], -1)
    scored = (label >= 0)[..., None] & np.isfinite(target)
    expected = bce + 3.0 * ((target - forecast) ** 2)[scored].mean()
    assert float(ForecastingLoss(3.0)(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)


def test_the_forecasting_model_saves_and_steps_as_the_plain_sequence_model(tmp_path) -> None:
    from reprolab.guard.keras.saving import save_keras_model
    from reprolab.models.mamba.model import (
        build_mamba_forecasting,
        inference_model,
        load_mamba_model,
    )
    from reprolab.serve.mamba_step import MambaStepper

    t = replace(repo_params().train.mamba, d_model=8, d_state=4)
    model = build_mamba_forecasting(F, t, 3, seed=3, expert_index=[0])
    x = np.random.default_rng(0).standard_normal((2, 50, F)).astype(np.float32)
    both = model.predict(x, verbose=0)
    assert both.shape == (2, 50, 1 + 3)
    served = inference_model(model)
    save_keras_model(served, tmp_path / "m.keras")
    loaded = load_mamba_model(tmp_path / "m.keras")
    p = loaded.predict(x, verbose=0)[..., 0]
    np.testing.assert_allclose(p, both[..., 0], atol=1e-7)
    assert np.max(np.abs(MambaStepper(loaded).run(x) - p)) <= 1e-6
