"""Full-batch L-BFGS (reprolab.models.pinn.lbfgs): the chunked loss is the full-batch loss, and the
guard rules hold (signals, out of memory, non-finite loss), on a linear least-squares problem whose
answer numpy knows."""

from __future__ import annotations

import itertools
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from reprolab.core.errors import ResourceLimitError
from reprolab.guard.common.signals import TrainingInterrupted
from reprolab.models.pinn.lbfgs import lbfgs_full_batch


def _problem(seed: int = 0) -> tuple[dict, dict]:
    g = np.random.default_rng(seed)
    a = g.normal(size=(103, 3))  # 103 rows: chunks of 16 leave a short last one
    b = g.normal(size=(37, 3))
    w = np.array([[1.5], [-2.0], [0.5]])
    x = {"a": a, "b": b}
    y = {"a": a @ w + 0.3 + 0.1 * g.normal(size=(103, 1)), "b": b @ w - 0.2}
    return x, y


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,), dtype="float64"), keras.layers.Dense(1, dtype="float64")]
    )
    model.build((None, 3))
    return model


def _loss(model: keras.Model, weight_b: float = 2.0):
    """Mean squared error per key, key b weighted: the shape of the PINN's loss."""

    def loss(xp: dict, yp: dict) -> tf.Tensor:
        total = tf.constant(0.0, tf.float64)
        for key, weight in (("a", 1.0), ("b", weight_b)):
            if key in xp:
                pred = tf.cast(model(xp[key]), tf.float64)
                total += weight * tf.reduce_mean(tf.square(pred - yp[key]))
        return total

    return loss


def _least_squares(x: dict, y: dict, weight_b: float = 2.0) -> np.ndarray:
    """The minimiser of mean_a + weight_b * mean_b: rows scaled by sqrt(weight / n)."""
    rows, targets = [], []
    for key, weight in (("a", 1.0), ("b", weight_b)):
        s = np.sqrt(weight / len(x[key]))
        rows.append(s * np.hstack([x[key], np.ones((len(x[key]), 1))]))
        targets.append(s * y[key])
    return np.linalg.lstsq(np.vstack(rows), np.vstack(targets), rcond=None)[0].ravel()


def _weights(model: keras.Model) -> np.ndarray:
    return np.concatenate([v.numpy().ravel() for v in model.trainable_variables])


def test_chunked_full_batch_loss_reaches_the_least_squares_answer() -> None:
    x, y = _problem()
    model = _model()
    seen: list[tuple[int, float]] = []
    result = lbfgs_full_batch(
        model,
        _loss(model),
        x,
        y,
        iterations=50,
        chunk_rows=16,
        on_iteration=lambda k, f: seen.append((k, f)),
    )
    np.testing.assert_allclose(_weights(model), _least_squares(x, y), atol=1e-6)
    assert result.loss_end < result.loss_start
    assert [k for k, _ in seen] == list(range(1, result.iterations + 1))
    assert all(b <= a for (_, a), (_, b) in itertools.pairwise(seen))  # accepted points only fall


def test_chunk_size_does_not_change_the_loss_and_runs_repeat_exactly() -> None:
    x, y = _problem()
    runs = []
    for chunk in (16, 16, 1000):
        model = _model()
        result = lbfgs_full_batch(model, _loss(model), x, y, iterations=3, chunk_rows=chunk)
        runs.append((result.loss_start, _weights(model)))
    np.testing.assert_array_equal(runs[0][1], runs[1][1])  # same set-up: identical
    assert runs[0][0] == pytest.approx(runs[2][0], rel=1e-12)  # one piece or seven
    np.testing.assert_allclose(runs[0][1], runs[2][1], rtol=1e-9)


def test_out_of_memory_halves_the_chunk_and_starts_again() -> None:
    x, y = _problem()
    model = _model()
    base = _loss(model)

    def loss(xp: dict, yp: dict) -> tf.Tensor:
        if max(v.shape[0] for v in xp.values()) > 20:  # traced: raised while building the graph
            raise MemoryError("too big")
        return base(xp, yp)

    result = lbfgs_full_batch(model, loss, x, y, iterations=50, chunk_rows=64)
    assert result.chunk_rows == 16
    assert sum("out of memory" in e for e in result.events) == 2
    np.testing.assert_allclose(_weights(model), _least_squares(x, y), atol=1e-6)

    with pytest.raises(ResourceLimitError, match="rows per chunk"):
        lbfgs_full_batch(_model(), loss, x, y, iterations=5, chunk_rows=64, min_chunk_rows=32)


def test_non_finite_loss_keeps_the_best_finite_point() -> None:
    x, y = _problem()
    model = _model()
    base = _loss(model)
    kernel = model.trainable_variables[0]

    def loss(xp: dict, yp: dict) -> tf.Tensor:
        # NaN once the first weight passes 1 on its way to 1.47, as an overflow partway would be
        return tf.where(kernel[0, 0] > 1.0, tf.constant(np.nan, tf.float64), base(xp, yp))

    result = lbfgs_full_batch(model, loss, x, y, iterations=50)
    assert result.message.startswith("stopped: non-finite loss")
    assert result.loss_end < result.loss_start
    assert float(kernel[0, 0]) <= 1.0
    assert float(base(x, y)) == pytest.approx(result.loss_end, rel=1e-12)  # the best point


def test_a_signal_stops_the_polish_with_the_starting_weights_back() -> None:
    x, y = _problem()
    model = _model()
    before = _weights(model)

    def interrupt(k: int, f: float) -> None:
        if k == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted, match="SIGTERM") as info:
        lbfgs_full_batch(model, _loss(model), x, y, iterations=50, on_iteration=interrupt)
    assert info.value.exit_code == 128 + signal.SIGTERM
    np.testing.assert_array_equal(_weights(model), before)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was put back
