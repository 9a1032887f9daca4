"""Benchmark: vectorised causal market features against the naive O(T^2) prefix reference.

Part of the benchmark stage (``benchmark.feature_rows``). A seeded synthetic batch (series
of ``series_length`` trading days, enough of them to reach ``rows`` rows) goes through
``compute_features`` end to end (input checks, indicators, expanding normalisation): one
warm-up call, then the best of ``repeats`` wall-clock runs.
The naive reference (``naive_features``: one full recomputation per prefix) is timed on a
small subset only, and checked against the vectorised result on that subset.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from reprolab.build.markets.features import (
    FEATURES,
    compute_features,
    compute_features_frame,
    naive_features,
)
from reprolab.core.errors import ResourceLimitError, ValidationError
from reprolab.core.goals import Goal, evaluate

# float64 arrays alive per input row at peak: 5 inputs, the output and a chunk's temporaries.
_BYTES_PER_ROW = 8 * (5 + 2 * len(FEATURES))


def synthetic_ohlcv(n_series: int, t_len: int, seed: int) -> dict[str, np.ndarray]:
    """A seeded random-walk OHLCV batch of shape (n_series, t_len) with valid bars."""
    rng = np.random.default_rng(seed)
    shape = (n_series, t_len)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, shape), axis=1))
    prev = np.concatenate([close[:, :1], close[:, :-1]], axis=1)
    open_ = prev * np.exp(rng.normal(0.0, 0.004, shape))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.004, shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.004, shape)))
    volume = np.round(np.exp(rng.normal(12.0, 0.5, shape))) + 1.0
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _compare(a: np.ndarray, b: np.ndarray) -> tuple[bool, bool, float]:
    """(same NaN pattern, bit-identical, max |a - b| over entries finite in both)."""
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    both = ~nan_a & ~nan_b
    diff = float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0
    return bool(np.array_equal(nan_a, nan_b)), bool(np.array_equal(a, b, equal_nan=True)), diff


def run(
    rows: int,
    series_length: int = 2520,
    naive_series: int = 2,
    naive_length: int = 400,
    min_periods: int = 60,
    repeats: int = 3,
    seed: int = 0,
    *,
    goal: Goal,
) -> dict[str, Any]:
    """Time both implementations; returns the metrics dict written to JSON, the slower of
    the two fast paths judged against ``goal`` (``validate.benchmark``'s)."""
    if rows < 1 or series_length < 1 or repeats < 1:
        raise ValidationError("rows, series-length and repeats must be >= 1")
    t_len = min(series_length, rows)
    n_series = math.ceil(rows / t_len)
    total = n_series * t_len
    try:
        import psutil

        available = psutil.virtual_memory().available
    except ImportError:  # psutil is optional: skip the guard rather than fail
        available = None
    if available is not None and total * _BYTES_PER_ROW > 0.8 * available:
        raise ResourceLimitError(
            f"rows: {total} rows need about {total * _BYTES_PER_ROW / 2**30:.1f} GiB, "
            f"{available / 2**30:.1f} GiB available; lower benchmark.feature_rows"
        )

    data = synthetic_ohlcv(n_series, t_len, seed)
    compute_features(**data, min_periods=min_periods)  # warm-up: imports, page faults
    vec_s, _ = _best_of(lambda: compute_features(**data, min_periods=min_periods), repeats)

    # The same rows as a long DataFrame (what the stage hands over): grouping and reassembly.
    frame = pd.DataFrame({k: v.ravel() for k, v in data.items()})
    frame.insert(0, "symbol", np.repeat([f"S{i:04d}" for i in range(n_series)], t_len))
    frame.insert(1, "copy", np.int16(0))
    frame_s, _ = _best_of(lambda: compute_features_frame(frame, min_periods=min_periods), repeats)

    sub_n, sub_t = min(naive_series, n_series), min(naive_length, t_len)
    sub = {k: np.ascontiguousarray(v[:sub_n, :sub_t]) for k, v in data.items()}
    naive_s, naive = _best_of(lambda: naive_features(**sub, min_periods=min_periods), 1)
    sub_vec_s, sub_vec = _best_of(lambda: compute_features(**sub, min_periods=min_periods), 3)
    same_nan, identical, max_diff = _compare(sub_vec, naive)

    vec_rps = total / vec_s
    naive_rows = sub_n * sub_t
    naive_rps = naive_rows / naive_s
    return {
        "rows": total,
        "series": n_series,
        "series_length": t_len,
        "features": len(FEATURES),
        "min_periods": min_periods,
        "repeats": repeats,
        "seed": seed,
        "vectorised_seconds": vec_s,
        "vectorised_rows_per_s": vec_rps,
        "frame_seconds": frame_s,
        "frame_rows_per_s": total / frame_s,
        "naive_rows": naive_rows,
        "naive_subset": f"{sub_n} series x {sub_t} rows",
        "naive_seconds": naive_s,
        "naive_rows_per_s": naive_rps,
        "speedup": vec_rps / naive_rps,
        "speedup_same_subset": naive_s / sub_vec_s,
        "max_abs_diff_vs_naive": max_diff,
        "nan_pattern_equal_vs_naive": same_nan,
        "bit_identical_vs_naive": identical,
        "goals": evaluate(
            {"features_rows_per_s": goal}, {"features_rows_per_s": min(vec_rps, total / frame_s)}
        ),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
