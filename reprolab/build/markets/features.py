"""Causal technical features for daily OHLCV series, vectorised over many series at once.

Inputs are 2-D arrays of shape ``(n_series, T)`` (rows of one series along axis 1, sorted by
date); a 1-D array is treated as one series. Every feature at row ``t`` uses rows ``<= t``
only, and is *prefix-exact*: computing on rows ``[0..t]`` gives bit-identical values at
those rows to computing on the whole series. That holds because every operation along
time is either element-wise, a sequential cumulative sum (``np.cumsum``) or a sequential
recursion (``scipy.signal.lfilter``); nothing uses pairwise/blocked reductions, look-ahead
or whole-series statistics.

Conventions (also written in each registry ``formula``):

* rolling windows cover rows ``t-n+1..t``; rows with an incomplete window are NaN;
* rolling and expanding standard deviations are *population* (``ddof=0``) values;
* EMAs use ``alpha = 2/(n+1)`` and start at the first value (``y_0 = x_0``), i.e. pandas
  ``ewm(span=n, adjust=False)``; Wilder smoothing uses ``alpha = 1/n`` the same way;
* a zero (or rounding-noise) standard deviation gives the neutral value (z-score 0,
  Bollinger %B 0.5) instead of inf/NaN, and RSI with no price movement is neutral (0).

``FEATURES[i]["window"]`` is the nominal look-back in rows (1: same row only, 2: one lag,
n: the rolling length or EMA span); EMA-based features have infinite (decaying) memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.signal import lfilter

from reprolab.core.errors import ValidationError

OHLCV = ["open", "high", "low", "close", "volume"]

FEATURES: list[dict[str, Any]] = [
    {
        "name": "log_return",
        "formula": "ln(close_t / close_{t-1}); NaN at t=0",
        "inputs": ["close"],
        "window": 2,
    },
    {
        "name": "gap",
        "formula": "ln(open_t / close_{t-1}); NaN at t=0",
        "inputs": ["open", "close"],
        "window": 2,
    },
    {"name": "range_hl", "formula": "ln(high_t / low_t)", "inputs": ["high", "low"], "window": 1},
    {"name": "body", "formula": "ln(close_t / open_t)", "inputs": ["open", "close"], "window": 1},
    *(
        {
            "name": f"sma_ratio_{n}",
            "formula": f"close_t / SMA_{n}(close)_t - 1; SMA over rows t-{n - 1}..t, "
            f"NaN for t < {n - 1}",
            "inputs": ["close"],
            "window": n,
        }
        for n in (5, 20, 60)
    ),
    *(
        {
            "name": f"ema_ratio_{n}",
            "formula": f"close_t / EMA_{n}(close)_t - 1; EMA alpha=2/({n}+1), "
            "y_0 = close_0 (pandas ewm(span, adjust=False))",
            "inputs": ["close"],
            "window": n,
        }
        for n in (12, 26)
    ),
    {
        "name": "macd",
        "formula": "(EMA_12(close)_t - EMA_26(close)_t) / close_t",
        "inputs": ["close"],
        "window": 26,
    },
    {
        "name": "macd_signal",
        "formula": "EMA_9(macd)_t, alpha=2/10, y_0 = macd_0",
        "inputs": ["close"],
        "window": 26,
    },
    {
        "name": "macd_hist",
        "formula": "macd_t - macd_signal_t",
        "inputs": ["close"],
        "window": 26,
    },
    {
        "name": "rsi_14",
        "formula": "G_t/(G_t+L_t) - 0.5 = RSI/100 - 0.5; d_t = close_t - close_{t-1}, "
        "G/L = Wilder EMA (alpha=1/14, y_1 = first value) of max(d,0)/max(-d,0) from t=1; "
        "NaN at t=0; 0 when G_t+L_t = 0",
        "inputs": ["close"],
        "window": 14,
    },
    {
        "name": "bb_pctb_20",
        "formula": "(close_t - (SMA_20 - 2*std_20)) / (4*std_20) on close, population std "
        "(ddof=0) over rows t-19..t; 0.5 when std_20 = 0; NaN for t < 19",
        "inputs": ["close"],
        "window": 20,
    },
    {
        "name": "bb_width_20",
        "formula": "4*std_20(close)_t / SMA_20(close)_t, population std (ddof=0); NaN for t < 19",
        "inputs": ["close"],
        "window": 20,
    },
    {
        "name": "volatility_20",
        "formula": "population std (ddof=0) of log_return over rows t-19..t; NaN for t < 20",
        "inputs": ["close"],
        "window": 20,
    },
    {
        "name": "volume_z_20",
        "formula": "(ln(volume_t) - mean_20) / std_20 of ln(volume) over rows t-19..t, "
        "population std (ddof=0); 0 when std_20 = 0; NaN for t < 19",
        "inputs": ["volume"],
        "window": 20,
    },
    # Levels: the hidden regime shows itself in how large the moves and how heavy the volume
    # are, as absolute levels. These stay raw ("normalise": False; the train-only scaler of
    # the windows standardises them): a per-series expanding z-score turns a level into "high
    # for this series so far", which measured 0.5 points of expected accuracy worse
    # (gradient-boosted trees, 64 symbols). Smoothed over 5 days against day-to-day noise.
    {
        "name": "log_volume",
        "formula": "ln(volume_t)",
        "inputs": ["volume"],
        "window": 1,
        "normalise": False,
    },
    {
        "name": "log_volume_5",
        "formula": "mean of ln(volume) over rows t-4..t; NaN for t < 4",
        "inputs": ["volume"],
        "window": 5,
        "normalise": False,
    },
    {
        "name": "range_hl_5",
        "formula": "mean of ln(high / low) over rows t-4..t; NaN for t < 4",
        "inputs": ["high", "low"],
        "window": 5,
        "normalise": False,
    },
    {
        "name": "abs_return_5",
        "formula": "mean of |log_return| over rows t-4..t; NaN for t < 5",
        "inputs": ["close"],
        "window": 6,
        "normalise": False,
    },
]
FEATURE_NAMES: list[str] = [f["name"] for f in FEATURES]
# Features passed through raw (levels); every other one gets the expanding normalisation.
RAW_FEATURES: list[int] = [i for i, f in enumerate(FEATURES) if not f.get("normalise", True)]

# Rows (series x time) per internal chunk: large enough to amortise Python overhead, small
# enough that a chunk's temporaries stay in cache. Chunks split series, never time.
_CHUNK_ELEMENTS = 1 << 15
_EPS = np.finfo(np.float64).eps


# --------------------------------------------------------------------------- input checks


def _as_batch(name: str, a: ArrayLike) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValidationError(
            f"{name}: expected a 1-D or 2-D (n_series, T) array, got {arr.ndim}-D"
        )
    return np.ascontiguousarray(arr)


def _check_inputs(
    open: ArrayLike, high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike
) -> tuple[list[np.ndarray], bool]:
    one_d = np.ndim(close) == 1
    arrays = [_as_batch(n, a) for n, a in zip(OHLCV, (open, high, low, close, volume), strict=True)]
    shape = arrays[3].shape
    for n, a in zip(OHLCV, arrays, strict=True):
        if a.shape != shape:
            raise ValidationError(f"{n}: shape {a.shape} differs from close's {shape}")
        # log() of non-positive or non-finite values would silently poison every later row
        # through the cumulative sums, so reject them up front.
        if not np.all(np.isfinite(a) & (a > 0.0)):
            raise ValidationError(f"{n}: values must be finite and > 0")
    return arrays, one_d


def _check_min_periods(min_periods: int) -> int:
    if isinstance(min_periods, bool) or not isinstance(min_periods, int | np.integer):
        raise ValidationError(f"min_periods: expected an integer, got {min_periods!r}")
    if min_periods < 1:
        raise ValidationError(f"min_periods: must be >= 1, got {min_periods}")
    return int(min_periods)


# ------------------------------------------------------------------------------- kernels


def _ema(x: np.ndarray, alpha: float) -> np.ndarray:
    """Recursive EMA along axis 1 with y_0 = x_0 exactly.

    Filtering x - x_0 from a zero state makes the start exact (alpha * 0 = 0) and keeps the
    initial condition free of rounding; the result is shifted back afterwards.
    """
    x0 = x[:, :1]
    y = lfilter([alpha], [1.0, alpha - 1.0], x - x0, axis=1)
    y += x0
    return y


def _prefix_sums(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative sums of s and s**2 along axis 1, with a leading zero column.

    Both come from ONE sequential np.cumsum over complex numbers (real part s, imaginary part
    s**2): complex addition is two independent float additions, so the sums are bit-identical
    to two real cumsums (prefix-exact), while the latency-bound loop runs once, not twice.
    """
    m, t = s.shape
    z = np.empty((m, t + 1), dtype=np.complex128)
    z[:, 0] = 0.0
    body = z[:, 1:]
    body.real = s
    np.multiply(s, s, out=body.imag)
    np.cumsum(body, axis=1, out=body)
    return z.real, z.imag


def _noise_floor_var(var: np.ndarray, mean: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> None:
    """Zero variances that are within rounding noise of E[x^2] - E[x]^2 (in place).

    The cumulative sums carry absolute errors of about eps * |S1_t| and eps * S2_t, so a
    variance below that bound is indistinguishable from 0 (a flat window) and would otherwise
    turn into a huge, meaningless z-score. Negative values from cancellation go too.
    """
    tol = s2 + 2.0 * np.abs(mean) * np.abs(s1)
    tol *= 4.0 * _EPS
    var[var <= tol] = 0.0


def _rolling_mean_std(
    s: np.ndarray, s1: np.ndarray, s2: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rolling mean and population std over n rows of a shifted series s, rows t >= n-1.

    s1/s2 are the _prefix_sums of s; returns arrays of shape (m, T-n+1) for rows n-1..T-1
    (in the shifted coordinates: add the shift back to the mean).
    """
    w1 = s1[:, n:] - s1[:, :-n]
    w2 = s2[:, n:] - s2[:, :-n]
    mean = w1 / n
    var = w2 / n - mean * mean
    _noise_floor_var(var, mean, s1[:, n:], s2[:, n:])
    return mean, np.sqrt(var)


def _rolling_mean(x: np.ndarray, n: int, out: np.ndarray) -> None:
    """Mean over rows t-n+1..t for t >= n-1 (written to ``out``, length T-n+1): prefix sums."""
    s1, _ = _prefix_sums(x)
    np.divide(s1[:, n:] - s1[:, :-n], n, out=out)


def _indicators_chunk(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray, out: np.ndarray
) -> None:
    """Fill out (F, m, T) with the raw indicators of one chunk of series."""
    t_len = c.shape[1]
    out.fill(np.nan)
    f = {name: out[i] for i, name in enumerate(FEATURE_NAMES)}

    # Logs of ratios, not differences of logs: one log each (the costliest op here) and no
    # cancellation between two large logarithms.
    for name, num, den in (
        ("log_return", c[:, 1:], c[:, :-1]),
        ("gap", o[:, 1:], c[:, :-1]),
        ("range_hl", h, lo),
        ("body", c, o),
    ):
        dst = f[name][:, 1:] if name in ("log_return", "gap") else f[name]
        np.log(np.divide(num, den, out=dst), out=dst)

    # Rolling statistics of close, shifted by the series' first close (causal; it keeps the
    # cumulative sums small so E[x^2] - E[x]^2 does not cancel catastrophically).
    c0 = c[:, :1]
    cs = c - c0
    s1, s2 = _prefix_sums(cs)
    for n in (5, 20, 60):
        if t_len < n:
            continue
        w1 = s1[:, n:] - s1[:, :-n]
        mean = w1 / n
        # c/SMA - 1 written as (c - SMA)/SMA in shifted coordinates: no 1 - 1 cancellation.
        np.divide(cs[:, n - 1 :] - mean, mean + c0, out=f[f"sma_ratio_{n}"][:, n - 1 :])
    if t_len >= 20:
        mean, sd = _rolling_mean_std(cs, s1, s2, 20)
        dev = cs[:, 19:] - mean
        four_sd = 4.0 * sd
        with np.errstate(divide="ignore", invalid="ignore"):
            pctb = 0.5 + dev / four_sd
        pctb[four_sd == 0.0] = 0.5
        f["bb_pctb_20"][:, 19:] = pctb
        np.divide(four_sd, mean + c0, out=f["bb_width_20"][:, 19:])

    ema12 = _ema(c, 2.0 / 13.0)
    ema26 = _ema(c, 2.0 / 27.0)
    np.divide(c - ema12, ema12, out=f["ema_ratio_12"])
    np.divide(c - ema26, ema26, out=f["ema_ratio_26"])
    macd = f["macd"]
    np.divide(ema12 - ema26, c, out=macd)
    signal = f["macd_signal"]
    signal[:] = _ema(macd, 2.0 / 10.0)
    np.subtract(macd, signal, out=f["macd_hist"])

    if t_len >= 2:
        d = np.diff(c, axis=1)
        gain = np.maximum(d, 0.0)
        loss = np.maximum(-d, 0.0)
        # Clip: the shift-back in _ema can leave -eps-sized values on all-zero stretches.
        g = np.maximum(_ema(gain, 1.0 / 14.0), 0.0)
        lo_s = np.maximum(_ema(loss, 1.0 / 14.0), 0.0)
        tot = g + lo_s
        with np.errstate(divide="ignore", invalid="ignore"):
            rsi = g / tot - 0.5
        rsi[tot == 0.0] = 0.0
        f["rsi_14"][:, 1:] = rsi

    if t_len >= 21:
        r = f["log_return"][:, 1:]
        rs = r - r[:, :1]
        r1, r2 = _prefix_sums(rs)
        _, sd = _rolling_mean_std(rs, r1, r2, 20)
        f["volatility_20"][:, 20:] = sd

    if t_len >= 20:
        lv = np.log(v)
        lvs = lv - lv[:, :1]
        v1, v2 = _prefix_sums(lvs)
        mean, sd = _rolling_mean_std(lvs, v1, v2, 20)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (lvs[:, 19:] - mean) / sd
        z[sd == 0.0] = 0.0
        f["volume_z_20"][:, 19:] = z

    lv = np.log(v, out=f["log_volume"])
    if t_len >= 5:
        _rolling_mean(lv - lv[:, :1], 5, out=f["log_volume_5"][:, 4:])
        f["log_volume_5"][:, 4:] += lv[:, :1]
        _rolling_mean(f["range_hl"], 5, out=f["range_hl_5"][:, 4:])
    if t_len >= 6:
        _rolling_mean(np.abs(f["log_return"][:, 1:]), 5, out=f["abs_return_5"][:, 5:])


class _Workspace:
    """Scratch arrays for _normalise_rows, reused across chunks.

    Fresh large temporaries cost a page fault per 4 KiB on first touch, which made up about
    half of the normalisation time; reusing one set of buffers pays that once per call.
    """

    def __init__(self, rows: int, t_len: int) -> None:
        self.z = np.empty((rows, t_len), dtype=np.complex128)
        self.a = np.empty((rows, t_len))
        self.b = np.empty((rows, t_len))
        self.m1 = np.empty((rows, t_len), dtype=bool)
        self.m2 = np.empty((rows, t_len), dtype=bool)
        self.ramp = np.arange(1.0, t_len + 1.0)

    def view(self, rows: int) -> tuple[np.ndarray, ...]:
        return self.z[:rows], self.a[:rows], self.b[:rows], self.m1[:rows], self.m2[:rows]


def _normalise_rows(x: np.ndarray, min_periods: int, out: np.ndarray, ws: _Workspace) -> None:
    """Expanding causal z-score along the LAST axis of a 2-D (rows, T) array, into out."""
    rows, t_len = x.shape
    z, a, b, invalid, keep_nan = ws.view(rows)
    np.isnan(x, out=invalid)
    n_valid = t_len - np.count_nonzero(invalid, axis=1)
    first = np.where(n_valid > 0, np.argmin(invalid, axis=1), t_len)
    # Shift by each row's first valid value: it sits at or before every row that uses it.
    x0 = x[np.arange(rows), np.minimum(first, t_len - 1)][:, None]
    np.subtract(x, x0, out=z.real)
    np.copyto(z.real, 0.0, where=invalid)  # NaN rows stay out of the statistics
    np.multiply(z.real, z.real, out=z.imag)
    np.cumsum(z, axis=1, out=z)  # real: sum, imag: sum of squares (see _prefix_sums)
    s1, s2 = z.real, z.imag
    if np.array_equal(n_valid, t_len - first):
        # Only leading NaNs (every raw indicator): the running count is closed-form.
        np.subtract(ws.ramp, first[:, None].astype(np.float64), out=a)
        np.less(a, min_periods, out=keep_nan)
    else:
        np.logical_not(invalid, out=keep_nan)
        np.cumsum(keep_nan, axis=1, dtype=np.float64, out=a)
        np.less(a, min_periods, out=keep_nan)
        keep_nan |= invalid
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(1.0, a, out=a)  # a: 1/count
        mean = np.multiply(s1, a, out=b)
        var = np.multiply(s2, a, out=a)
        np.multiply(mean, mean, out=out)
        var -= out
        # Prefix sums of n terms carry about n*eps relative error, so var = S2/n - mean^2 is
        # only known to about 4*eps*S2 (S2 >= n*mean^2); below that it is a flat prefix.
        np.multiply(s2, 4.0 * _EPS, out=out)
        flat = np.less_equal(var, out, out=invalid)
        np.subtract(x, x0, out=out)
        out -= mean
        out /= np.sqrt(var, out=var)
    np.copyto(out, 0.0, where=flat)
    np.copyto(out, np.nan, where=keep_nan)


def _normalise_time_last(x: np.ndarray, min_periods: int) -> np.ndarray:
    out = np.empty(x.shape)
    if out.size == 0:
        return out
    ws = None
    for sl in _chunks(*x.shape):
        rows = sl.stop - sl.start
        if ws is None:
            ws = _Workspace(rows, x.shape[1])
        _normalise_rows(x[sl], min_periods, out[sl], ws)
    return out


# --------------------------------------------------------------------------- public API


def _chunks(n_series: int, t_len: int) -> list[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(t_len, 1))
    return [slice(i, min(i + step, n_series)) for i in range(0, n_series, step)]


def _indicators_fmt(arrays: list[np.ndarray]) -> np.ndarray:
    """Raw indicators as (F, n_series, T) (time contiguous, the layout the kernels want)."""
    o, h, lo, c, v = arrays
    n_series, t_len = c.shape
    out = np.empty((len(FEATURES), n_series, t_len))
    if out.size:
        for sl in _chunks(n_series, t_len):
            _indicators_chunk(o[sl], h[sl], lo[sl], c[sl], v[sl], out[:, sl])
    return out


def compute_indicators(
    open: ArrayLike, high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike
) -> np.ndarray:
    """Raw (un-normalised) indicators, shape (n_series, T, n_features), float64.

    Inputs are (n_series, T) arrays (or 1-D for one series, giving (T, n_features)); feature
    order is ``FEATURE_NAMES``. Prices and volume must be finite and > 0.
    """
    arrays, one_d = _check_inputs(open, high, low, close, volume)
    res = np.moveaxis(_indicators_fmt(arrays), 0, -1)
    res = np.ascontiguousarray(res)
    return res[0] if one_d else res


def expanding_normalise(x: ArrayLike, min_periods: int) -> np.ndarray:
    """Causal expanding z-score along axis 1: (x_t - mean(x_<=t)) / std(x_<=t).

    ``x`` is (n_series, T) or (n_series, T, n_features). NaN rows are left out of the
    statistics and stay NaN; rows with fewer than ``min_periods`` valid values so far are
    NaN; a zero (population, ddof=0) std gives 0.0. Statistics come from sequential
    cumulative sums of values shifted by each series' first valid value, so the result at
    row t depends on rows <= t only and is bit-identical on any prefix.
    """
    min_periods = _check_min_periods(min_periods)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise ValidationError(f"x: expected a 2-D or 3-D array, got {arr.ndim}-D")
    if arr.ndim == 2:
        return _normalise_time_last(arr, min_periods)
    n, t_len, k = arr.shape
    flat = np.ascontiguousarray(np.moveaxis(arr, 1, -1)).reshape(n * k, t_len)
    res = _normalise_time_last(flat, min_periods)
    return np.ascontiguousarray(np.moveaxis(res.reshape(n, k, t_len), -1, 1))


def compute_features(
    open: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    volume: ArrayLike,
    min_periods: int,
) -> np.ndarray:
    """Indicators followed by the causal expanding normalisation (the level features of
    ``RAW_FEATURES`` pass through raw): what the pipeline calls.

    Returns (n_series, T, n_features) float64 (``(T, n_features)`` for 1-D inputs); feature
    order is ``FEATURE_NAMES``. Row t depends on input rows <= t only.
    """
    min_periods = _check_min_periods(min_periods)
    arrays, one_d = _check_inputs(open, high, low, close, volume)
    n_series, t_len = arrays[3].shape
    n_feat = len(FEATURES)
    out = np.empty((n_series, t_len, n_feat))
    if out.size == 0:
        return out[0] if one_d else out
    chunks = _chunks(n_series, t_len)
    m_max = chunks[0].stop
    # Buffers reused by every chunk (see _Workspace for why).
    raw = np.empty((n_feat, m_max, t_len))
    norm = np.empty((n_feat * m_max, t_len))
    ws = _Workspace(n_feat * m_max, t_len)
    # Per chunk of series: indicators and normalisation while the chunk is still in cache.
    for sl in chunks:
        m = sl.stop - sl.start
        raw_m = raw[:, :m]
        _indicators_chunk(*(a[sl] for a in arrays), raw_m)
        rows = n_feat * m
        flat = raw_m.reshape(rows, t_len)  # a copy only for a smaller last chunk
        _normalise_rows(flat, min_periods, norm[:rows], ws)
        out[sl] = np.moveaxis(norm[:rows].reshape(n_feat, m, t_len), 0, -1)
        for j in RAW_FEATURES:
            out[sl, :, j] = raw_m[j]
    return out[0] if one_d else out


def naive_features(
    open: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    volume: ArrayLike,
    min_periods: int,
) -> np.ndarray:
    """Reference: for every t, compute_features on rows [0..t] and keep row t (O(T^2))."""
    arrays, one_d = _check_inputs(open, high, low, close, volume)
    n_series, t_len = arrays[3].shape
    out = np.empty((n_series, t_len, len(FEATURES)))
    for t in range(t_len):
        prefix = [a[:, : t + 1] for a in arrays]
        out[:, t] = compute_features(*prefix, min_periods=min_periods)[:, -1]
    return out[0] if one_d else out


def compute_features_frame(
    df: pd.DataFrame, min_periods: int, series_keys: Sequence[str] = ("symbol", "copy")
) -> pd.DataFrame:
    """Features for a long frame holding many series; same index as ``df``.

    Rows are grouped by ``series_keys`` (input order kept within a series, assumed sorted by
    date); series of equal length are stacked into one (n, T) batch per length. Returns one
    float64 column per name in ``FEATURE_NAMES``.
    """
    keys = list(series_keys)
    missing = [k for k in [*keys, *OHLCV] if k not in df.columns]
    if missing:
        raise ValidationError(f"df: missing column(s) {missing}")
    n_feat = len(FEATURES)
    # Feature-major buffer: its transpose is the column-major block pandas stores, so the
    # frame wraps it without another copy of every value.
    out = np.full((n_feat, len(df)), np.nan)
    if len(df):
        values = {col: df[col].to_numpy(dtype=np.float64) for col in OHLCV}
        groups = df.groupby(keys, sort=False, dropna=False).indices
        by_len: dict[int, list[np.ndarray]] = {}
        for pos in groups.values():
            by_len.setdefault(len(pos), []).append(np.sort(pos))
        for pos_list in by_len.values():
            idx = np.stack(pos_list)  # (n_series, T) row positions
            batch = [values[col][idx] for col in OHLCV]
            feats = compute_features(*batch, min_periods=min_periods)
            out[:, idx.ravel()] = feats.reshape(-1, n_feat).T
    return pd.DataFrame(out.T, index=df.index, columns=FEATURE_NAMES, copy=False)
