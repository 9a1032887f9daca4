"""The sequence Mamba: causal (a prediction at t ignores days after t), its one-day step path
equals the whole-series pass, and training chunks score every labelled day once warm."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprolab.core.config import MambaTrainParams
from reprolab.core.errors import ValidationError
from reprolab.models.mamba import sequences as sq
from reprolab.models.mamba.data import Series

F = 5


def _model(**arch):
    from reprolab.models.mamba.model import build_mamba_sequence

    t = replace(MambaTrainParams(), d_model=8, d_state=4, **arch)
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
    from reprolab.models.mamba.step import MambaStepper

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
