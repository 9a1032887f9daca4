"""Full-batch L-BFGS for a Keras model, under the same guard rules as ``train_guarded``.

Adam's last epochs leave a small model (thousands of weights) at the noise floor of its
mini-batches; a few hundred full-batch quasi-Newton steps then cut the error further (the usual
"Adam, then L-BFGS" recipe for physics-informed networks). SciPy's L-BFGS-B drives the search
in float64; the loss and its gradient come from one ``tf.function`` over chunks of the batch,
summed in numpy in a fixed order, so the sums are the same bits in every run (see
:func:`_value_and_gradient`).

Guard rules: SIGINT/SIGTERM stop the search and raise :class:`TrainingInterrupted` with the
starting weights restored (a rerun starts the polish again: L-BFGS keeps no state worth
resuming); running out of memory halves the chunk and starts again; a non-finite loss ends the
search at the best finite point seen. Deterministic: the chunks, their order and SciPy's
iteration are fixed, and the TensorFlow ops run deterministically.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from reprolab.core.errors import ResourceLimitError
from reprolab.guard.common.signals import TrainingInterrupted, signal_at, signals_to_flag

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

CHUNK_ROWS = 8192  # rows per piece: of 2,048-32,768, the fastest here (0.64 s per 151k rows)
MEMORY = 50  # L-BFGS correction pairs; SciPy's default 10 converged slower on the PINN

LossFn = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]


@dataclass
class LbfgsResult:
    iterations: int
    evaluations: int
    loss_start: float
    loss_end: float
    message: str
    chunk_rows: int
    events: list[str] = field(default_factory=list)


class _Stop(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _pieces(
    x: Mapping[str, np.ndarray], y: Mapping[str, np.ndarray], chunk: int
) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]]:
    """(x piece, y piece, share of its key's rows): each piece holds one key's rows."""
    out = []
    for key in sorted(x):
        n = len(x[key])
        for i in range(0, n, chunk):
            j = min(n, i + chunk)
            xp = {key: x[key][i:j]}
            yp = {key: y[key][i:j]} if key in y else {}
            out.append((xp, yp, (j - i) / n))
    return out


def _value_and_gradient(model: keras.Model, loss: LossFn, pieces: list) -> Callable[[], Any]:
    """(total loss, flat float64 gradient), the loss a share-weighted sum of the pieces.

    ``loss(x, y)`` must return the weighted sum of per-key mean terms, so the share-weighted
    sum over one key's pieces is that key's mean over all of its rows. One ``tf.function``
    evaluates every piece (they run in parallel) and returns them stacked; the sums are
    taken here, in numpy, in piece order. Summed inside the graph, two evaluations at the
    same weights differed in the last bits (measured: a new gradient hash at every call),
    and L-BFGS amplifies such differences into different weights.
    """
    import tensorflow as tf

    variables = model.trainable_variables
    consts = [
        (
            {k: tf.constant(v) for k, v in xp.items()},
            {k: tf.constant(v) for k, v in yp.items()},
            share,
        )
        for xp, yp, share in pieces
    ]

    @tf.function(autograph=False)
    def each() -> tuple[Any, Any]:
        values, grads = [], []
        for xp, yp, share in consts:  # a tape per piece: no gradient over the whole batch
            with tf.GradientTape() as tape:
                value = share * tf.cast(loss(xp, yp), tf.float64)
            g = tape.gradient(value, variables, unconnected_gradients="zero")
            values.append(value)
            grads.append(tf.concat([tf.reshape(tf.cast(t, tf.float64), [-1]) for t in g], 0))
        return tf.stack(values), tf.stack(grads)

    def fn() -> tuple[float, np.ndarray]:
        values, grads = (t.numpy() for t in each())
        total, grad = 0.0, np.zeros(grads.shape[1])
        for value, g in zip(values, grads, strict=True):  # a fixed order: the same bits
            total += float(value)
            grad += g
        return total, grad

    return fn


class _Search:
    """One L-BFGS-B run from ``w0``: counts, the best finite point, the stop conditions."""

    def __init__(self, fn: Callable[[], Any], assign: Callable[[np.ndarray], None], flag: Any):
        self.fn, self.assign, self.flag = fn, assign, flag
        self.evaluations = self.iterations = 0
        self.best_value, self.best_w = math.inf, np.empty(0)
        self.start = math.nan  # the loss at the starting point

    def value_and_gradient(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        if self.flag.signum is not None:
            raise _Stop("signal")
        self.assign(w)
        value, grad = self.fn()
        self.evaluations += 1
        if not math.isfinite(value):
            raise _Stop(f"non-finite loss ({value})")
        if value < self.best_value:
            self.best_value, self.best_w = value, np.array(w, copy=True)
        return value, grad

    def run(
        self, w0: np.ndarray, iterations: int, on_iteration: Callable[[int, float], None] | None
    ) -> str:
        """SciPy's message; raises _Stop."""
        import scipy.optimize

        def after_iteration(intermediate_result: Any) -> None:
            self.iterations += 1
            signal_at(f"lbfgs:{self.iterations}")  # tests only: REPROLAB_SIGNAL_AT
            if on_iteration is not None:
                on_iteration(self.iterations, float(intermediate_result.fun))

        self.start, _ = self.value_and_gradient(w0)
        found = scipy.optimize.minimize(
            self.value_and_gradient,
            w0,
            jac=True,
            method="L-BFGS-B",
            callback=after_iteration,
            options={"maxiter": iterations, "maxcor": MEMORY, "ftol": 0.0, "gtol": 0.0},
        )
        return str(found.message)


def lbfgs_full_batch(
    model: keras.Model,
    loss: LossFn,
    x: Mapping[str, np.ndarray],
    y: Mapping[str, np.ndarray],
    *,
    iterations: int,
    min_chunk_rows: int = 8,
    chunk_rows: int = CHUNK_ROWS,
    on_iteration: Callable[[int, float], None] | None = None,
) -> LbfgsResult:
    """Minimise ``loss`` over all of ``x``/``y`` with L-BFGS-B; the model ends on the best point.

    ``x``/``y`` map keys to arrays (``y`` may lack keys without labels); ``loss(xp, yp)``
    sees dicts holding one key each. ``on_iteration(k, loss)`` runs after each iteration
    (1-based). Raises :class:`TrainingInterrupted` on SIGINT/SIGTERM, with the starting
    weights restored.
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    variables = model.trainable_variables
    shapes = [tuple(v.shape) for v in variables]
    w0 = np.concatenate([np.asarray(v.numpy(), dtype=np.float64).ravel() for v in variables])
    events: list[str] = []

    def assign(flat: np.ndarray) -> None:
        offset = 0
        for v, shape in zip(variables, shapes, strict=True):
            size = int(np.prod(shape))
            v.assign(flat[offset : offset + size].reshape(shape).astype(np.dtype(v.dtype)))
            offset += size

    chunk = chunk_rows
    with signals_to_flag(events) as flag:
        while True:
            search = _Search(_value_and_gradient(model, loss, _pieces(x, y, chunk)), assign, flag)
            try:
                message = search.run(w0, iterations, on_iteration)
            except _Stop as stop:
                if stop.why == "signal":
                    assign(w0)
                    signame = signal.Signals(flag.signum).name
                    raise TrainingInterrupted(
                        f"interrupted during the L-BFGS polish ({signame}); run the stage "
                        "again to polish from the start",
                        signum=flag.signum,
                    ) from None
                message = f"stopped: {stop.why}"
                events.append(f"L-BFGS {message}; kept the best finite point")
            except (tf.errors.ResourceExhaustedError, MemoryError) as exc:
                if chunk <= min_chunk_rows:
                    raise ResourceLimitError(
                        f"out of memory in the L-BFGS polish with {chunk} rows per chunk, "
                        f"already at the minimum {min_chunk_rows}; polish fewer rows"
                    ) from exc
                del exc
                gc.collect()
                assign(w0)
                chunk = max(chunk // 2, min_chunk_rows)
                events.append(
                    f"out of memory in the L-BFGS polish: starting again with {chunk} rows "
                    "per chunk"
                )
                log.warning(events[-1])
                continue
            break
    if search.best_w.size:
        assign(search.best_w)
    return LbfgsResult(
        iterations=search.iterations,
        evaluations=search.evaluations,
        loss_start=search.start,
        loss_end=search.best_value,
        message=message,
        chunk_rows=chunk,
        events=events,
    )
