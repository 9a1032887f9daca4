"""Causal market features: prefix-exactness, no look-ahead, reference values, batching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprolab.build.markets import features as fm
from reprolab.core.errors import ValidationError
from reprolab.core.goals import goals_of
from tests.tiny import repo_params

FAST = settings(max_examples=50, deadline=None, database=None)
MIN_PERIODS = 30
EXPECTED_NAMES = [
    "log_return",
    "gap",
    "range_hl",
    "body",
    "sma_ratio_5",
    "sma_ratio_20",
    "sma_ratio_60",
    "ema_ratio_12",
    "ema_ratio_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi_14",
    "bb_pctb_20",
    "bb_width_20",
    "volatility_20",
    "volume_z_20",
    "log_volume",
    "log_volume_5",
    "range_hl_5",
    "abs_return_5",
]
COL = {name: i for i, name in enumerate(EXPECTED_NAMES)}


def make_ohlcv(
    seed: int, t_len: int, n_series: int = 1, level: float = 100.0, flat: float = 0.0
) -> dict[str, np.ndarray]:
    """A random-walk OHLCV batch (n_series, T); ``flat`` is the share of unchanged days."""
    rng = np.random.default_rng(seed)
    shape = (n_series, t_len)
    ret = rng.normal(0.0, 0.02, shape)
    # Unchanged closes and repeated volumes exercise the zero-variance / RSI 0/0 paths.
    still = rng.random(shape) < flat
    ret[still] = 0.0
    close = level * np.exp(np.cumsum(ret, axis=1))
    prev = np.concatenate([close[:, :1], close[:, :-1]], axis=1)
    open_ = prev * np.exp(rng.normal(0.0, 0.005, shape))
    open_[still] = prev[still]
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.005, shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.005, shape)))
    volume = np.round(np.exp(rng.normal(10.0, 0.7, shape))) + 1.0
    volume[still] = 1000.0
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def rows(data: dict[str, np.ndarray], sl: slice) -> dict[str, np.ndarray]:
    return {k: v[:, sl] for k, v in data.items()}


series_params = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**32 - 1),
        "t_len": st.integers(70, 300),
        "level": st.sampled_from([0.05, 1.0, 100.0, 25_000.0]),
        "flat": st.sampled_from([0.0, 0.0, 0.3, 0.9]),
    }
)


# ----------------------------------------------------------------------------- registry


def test_registry_names_order_and_keys() -> None:
    assert [f["name"] for f in fm.FEATURES] == EXPECTED_NAMES
    assert fm.FEATURE_NAMES == EXPECTED_NAMES
    for f in fm.FEATURES:
        assert {"name", "formula", "inputs", "window"} <= set(f) <= {
            "name", "formula", "inputs", "window", "normalise"
        }  # fmt: skip
        assert isinstance(f["window"], int) and f["window"] >= 1
        assert set(f["inputs"]) <= {"open", "high", "low", "close", "volume"}
    # The std convention must be stated where a std is used.
    for name in ("bb_pctb_20", "bb_width_20", "volatility_20", "volume_z_20"):
        assert "ddof=0" in fm.FEATURES[COL[name]]["formula"]


# ------------------------------------------------------------------- causal properties


@FAST
@given(p=series_params, data=st.data())
def test_prefix_equals_full(p: dict, data: st.DataObject) -> None:
    ohlcv = make_ohlcv(p["seed"], p["t_len"], level=p["level"], flat=p["flat"])
    full = fm.compute_features(**ohlcv, min_periods=MIN_PERIODS)
    assert full.shape == (1, p["t_len"], len(EXPECTED_NAMES))
    for cut in data.draw(st.lists(st.integers(1, p["t_len"]), min_size=1, max_size=4)):
        part = fm.compute_features(**rows(ohlcv, slice(0, cut)), min_periods=MIN_PERIODS)
        np.testing.assert_array_equal(part, full[:, :cut], strict=True)


@FAST
@given(p=series_params, data=st.data())
def test_future_changes_leave_past_unchanged(p: dict, data: st.DataObject) -> None:
    ohlcv = make_ohlcv(p["seed"], p["t_len"], level=p["level"], flat=p["flat"])
    t = data.draw(st.integers(0, p["t_len"] - 2), label="t")
    other = make_ohlcv(p["seed"] + 1, p["t_len"], level=p["level"] * 3.0)
    changed = {k: v.copy() for k, v in ohlcv.items()}
    for k in changed:  # every input changes at every row > t
        changed[k][:, t + 1 :] = other[k][:, t + 1 :]
    base = fm.compute_features(**ohlcv, min_periods=MIN_PERIODS)
    pert = fm.compute_features(**changed, min_periods=MIN_PERIODS)
    np.testing.assert_array_equal(pert[:, : t + 1], base[:, : t + 1], strict=True)
    base_raw = fm.compute_indicators(**ohlcv)
    pert_raw = fm.compute_indicators(**changed)
    np.testing.assert_array_equal(pert_raw[:, : t + 1], base_raw[:, : t + 1], strict=True)


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    t_len=st.integers(2, 200),
    nan_share=st.sampled_from([0.0, 0.1, 0.5]),
    min_periods=st.integers(1, 40),
    data=st.data(),
)
def test_expanding_normalise_prefix_with_interior_nans(
    seed: int, t_len: int, nan_share: float, min_periods: int, data: st.DataObject
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, (2, t_len, 3))
    x[rng.random(x.shape) < nan_share] = np.nan
    x[:, :, 2] = 7.25  # a constant feature: std 0 -> 0.0, never inf
    full = fm.expanding_normalise(x, min_periods)
    cut = data.draw(st.integers(1, t_len))
    np.testing.assert_array_equal(fm.expanding_normalise(x[:, :cut], min_periods), full[:, :cut])
    assert not np.isinf(full).any()
    count = np.cumsum(~np.isnan(x), axis=1)
    np.testing.assert_array_equal(np.isnan(full), np.isnan(x) | (count < min_periods))
    const = full[:, :, 2]
    np.testing.assert_array_equal(const[~np.isnan(const)], 0.0)


def test_naive_reference_equals_vectorised() -> None:
    ohlcv = make_ohlcv(7, 130, n_series=2, flat=0.2)
    fast = fm.compute_features(**ohlcv, min_periods=MIN_PERIODS)
    naive = fm.naive_features(**ohlcv, min_periods=MIN_PERIODS)
    np.testing.assert_array_equal(naive, fast, strict=True)


# -------------------------------------------------------------------- reference values


def _pandas_expanding(x: np.ndarray, min_periods: int) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        frame = pd.DataFrame(x[i])
        exp = frame.expanding(min_periods=min_periods)
        out[i] = ((frame - exp.mean()) / exp.std(ddof=0)).to_numpy()
    return out


def test_indicators_match_pandas() -> None:
    d = make_ohlcv(11, 300)
    raw = fm.compute_indicators(**{k: v[0] for k, v in d.items()})  # 1-D in, (T, F) out
    assert raw.shape == (300, len(EXPECTED_NAMES))
    c = pd.Series(d["close"][0])
    o = pd.Series(d["open"][0])
    lv = np.log(pd.Series(d["volume"][0]))
    lr = np.log(c).diff()
    ema12 = c.ewm(span=12, adjust=False).mean()
    ema26 = c.ewm(span=26, adjust=False).mean()
    macd = (ema12 - ema26) / c
    signal = macd.ewm(span=9, adjust=False).mean()
    delta = c.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-delta).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    rsi = 100.0 - 100.0 / (1.0 + gain / loss)
    sma20 = c.rolling(20).mean()
    sd20 = c.rolling(20).std(ddof=0)
    expected = {
        "log_return": lr,
        "gap": np.log(o / c.shift(1)),
        "range_hl": np.log(pd.Series(d["high"][0]) / pd.Series(d["low"][0])),
        "body": np.log(c / o),
        "sma_ratio_5": c / c.rolling(5).mean() - 1.0,
        "sma_ratio_20": c / sma20 - 1.0,
        "sma_ratio_60": c / c.rolling(60).mean() - 1.0,
        "ema_ratio_12": c / ema12 - 1.0,
        "ema_ratio_26": c / ema26 - 1.0,
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": macd - signal,
        "rsi_14": rsi / 100.0 - 0.5,
        "bb_pctb_20": (c - (sma20 - 2 * sd20)) / (4 * sd20),
        "bb_width_20": 4 * sd20 / sma20,
        "volatility_20": lr.rolling(20).std(ddof=0),
        "volume_z_20": (lv - lv.rolling(20).mean()) / lv.rolling(20).std(ddof=0),
        "log_volume": lv,
        "log_volume_5": lv.rolling(5).mean(),
        "range_hl_5": np.log(pd.Series(d["high"][0]) / pd.Series(d["low"][0])).rolling(5).mean(),
        "abs_return_5": lr.abs().rolling(5).mean(),
    }
    assert list(expected) == EXPECTED_NAMES
    for name, want in expected.items():
        np.testing.assert_allclose(
            raw[:, COL[name]], want.to_numpy(), rtol=1e-10, atol=1e-12, err_msg=name
        )


def test_levels_pass_through_raw_and_the_rest_is_normalised() -> None:
    d = make_ohlcv(4, 200)
    raw = fm.compute_indicators(**d)
    feats = fm.compute_features(**d, min_periods=MIN_PERIODS)
    levels = [COL[n] for n in ("log_volume", "log_volume_5", "range_hl_5", "abs_return_5")]
    assert levels == fm.RAW_FEATURES
    np.testing.assert_array_equal(feats[..., levels], raw[..., levels])
    rest = [i for i in range(len(EXPECTED_NAMES)) if i not in levels]
    np.testing.assert_array_equal(
        feats[..., rest], fm.expanding_normalise(raw[..., rest], MIN_PERIODS)
    )


def test_expanding_normalise_matches_pandas() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(50.0, 0.5, (2, 400, 2))
    x[:, :25] = np.nan  # leading warm-up NaNs (the closed-form count path)
    x[1, 100:110, 1] = np.nan  # interior NaNs (the general path)
    got = fm.expanding_normalise(x, 10)
    np.testing.assert_allclose(got, _pandas_expanding(x, 10), rtol=1e-9, atol=1e-10)
    # 2-D input: time along axis 1 as well.
    np.testing.assert_array_equal(fm.expanding_normalise(x[:, :, 0], 10), got[:, :, 0])


@pytest.mark.parametrize("level", [0.01, 1.0, 123.456, 1e5])
def test_constant_prices_give_finite_features(level: float) -> None:
    t_len = 200
    price = np.full((1, t_len), level)
    volume = np.full((1, t_len), 5000.0)
    raw = fm.compute_indicators(price, price, price, price, volume)
    feats = fm.compute_features(price, price, price, price, volume, min_periods=MIN_PERIODS)
    assert not np.isinf(raw).any()
    assert np.isfinite(raw[:, 60:]).all()
    warm = 59 + MIN_PERIODS  # sma_ratio_60's first value, then min_periods of them
    assert np.isfinite(feats[:, warm:]).all()
    assert not np.isinf(feats).any()
    assert raw[0, -1, COL["bb_pctb_20"]] == 0.5
    assert raw[0, -1, COL["rsi_14"]] == 0.0
    normalised = [i for i in range(len(EXPECTED_NAMES)) if i not in fm.RAW_FEATURES]
    np.testing.assert_array_equal(feats[:, warm:, normalised], 0.0)
    np.testing.assert_array_equal(feats[:, warm:, COL["log_volume"]], np.log(5000.0))


def test_flat_window_after_a_move_is_neutral() -> None:
    # A price that moves, then stays flat for longer than 20 days: the rolling std is a
    # rounding-noise value; it must give the neutral %B / z-score, not a huge one.
    close = np.concatenate([100.0 * np.exp(np.linspace(0.0, 1.3, 80)), np.full(60, 377.7)])
    volume = np.concatenate([np.linspace(1e3, 9e4, 80), np.full(60, 31_337.0)])
    raw = fm.compute_indicators(close, close, close, close, volume)
    tail = raw[-30:]
    np.testing.assert_array_equal(tail[:, COL["bb_pctb_20"]], 0.5)
    np.testing.assert_array_equal(tail[:, COL["bb_width_20"]], 0.0)
    np.testing.assert_array_equal(tail[:, COL["volume_z_20"]], 0.0)
    assert np.abs(tail[:, COL["sma_ratio_20"]]).max() < 1e-12


# ------------------------------------------------------------------------------ batching


@FAST
@given(seed=st.integers(0, 2**32 - 1), t_len=st.integers(1, 150))
def test_batch_equals_each_series_alone(seed: int, t_len: int) -> None:
    d = make_ohlcv(seed, t_len, n_series=3, flat=0.2)
    batch = fm.compute_features(**d, min_periods=MIN_PERIODS)
    assert batch.shape == (3, t_len, len(EXPECTED_NAMES))
    for i in range(3):
        alone = fm.compute_features(
            **rows(d, slice(None)) | {k: v[i] for k, v in d.items()}, min_periods=MIN_PERIODS
        )
        np.testing.assert_array_equal(alone, batch[i], strict=True)


def test_large_batch_chunking_is_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    d = make_ohlcv(21, 90, n_series=9)
    whole = fm.compute_features(**d, min_periods=MIN_PERIODS)
    monkeypatch.setattr(fm, "_CHUNK_ELEMENTS", 200)  # two series per chunk
    np.testing.assert_array_equal(fm.compute_features(**d, min_periods=MIN_PERIODS), whole)


def test_frame_with_unequal_lengths_matches_per_series() -> None:
    lengths = {("AAA", 0): 120, ("BBB", 0): 75, ("AAA", 1): 120, ("CCC", 0): 30}
    parts, expected = [], {}
    for j, ((sym, copy), t_len) in enumerate(lengths.items()):
        d = make_ohlcv(100 + j, t_len)
        part = pd.DataFrame({k: v[0] for k, v in d.items()})
        part["volume"] = part["volume"].astype(np.int64)
        part["symbol"], part["copy"], part["step"] = sym, copy, np.arange(t_len)
        parts.append(part)
        expected[(sym, copy)] = fm.compute_features(
            *(part[c].to_numpy(np.float64) for c in ["open", "high", "low", "close", "volume"]),
            min_periods=MIN_PERIODS,
        )
    long = pd.concat(parts, ignore_index=True)
    # Interleave the series (order kept within each) and use a non-default index.
    rng = np.random.default_rng(0)
    long = long.iloc[np.argsort(rng.random(len(long)), kind="stable")]
    long = long.sort_values("step", kind="stable")
    long.index = pd.Index(rng.permutation(len(long)) * 10 + 3, name="rid")

    out = fm.compute_features_frame(long, min_periods=MIN_PERIODS)
    assert out.index.equals(long.index)
    assert list(out.columns) == EXPECTED_NAMES
    assert (out.dtypes == np.float64).all()
    for key, want in expected.items():
        mask = (long["symbol"] == key[0]).to_numpy() & (long["copy"] == key[1]).to_numpy()
        np.testing.assert_array_equal(out.to_numpy()[mask], want)


def test_frame_custom_keys_and_empty() -> None:
    d = make_ohlcv(1, 40)
    df = pd.DataFrame({k: v[0] for k, v in d.items()}).assign(ticker="X")
    out = fm.compute_features_frame(df, min_periods=5, series_keys=("ticker",))
    np.testing.assert_array_equal(out.to_numpy(), fm.compute_features(**d, min_periods=5)[0])
    empty = fm.compute_features_frame(df.iloc[:0], min_periods=5, series_keys=["ticker"])
    assert empty.shape == (0, len(EXPECTED_NAMES))
    with pytest.raises(ValidationError, match="symbol"):
        fm.compute_features_frame(df, min_periods=5)


# ------------------------------------------------------------------------------- inputs


def test_empty_inputs_keep_their_shape() -> None:
    empty = np.empty((2, 0))
    assert fm.compute_features(empty, empty, empty, empty, empty, min_periods=3).shape == (
        2,
        0,
        len(EXPECTED_NAMES),
    )
    assert fm.expanding_normalise(np.empty((0, 5, 3)), 3).shape == (0, 5, 3)
    assert fm.expanding_normalise(np.empty((2, 0)), 3).shape == (2, 0)


def test_short_series_are_all_nan_warm_up() -> None:
    d = make_ohlcv(2, 1)
    assert np.isnan(fm.compute_features(**d, min_periods=1)[:, :, COL["log_return"]]).all()
    d = make_ohlcv(2, 10)
    raw = fm.compute_indicators(**d)
    assert np.isnan(raw[:, :, COL["sma_ratio_20"]]).all()
    assert np.isfinite(raw[:, :, COL["macd"]]).all()


@pytest.mark.parametrize(
    ("field", "value"), [("close", 0.0), ("low", -1.0), ("volume", np.nan), ("open", np.inf)]
)
def test_bad_values_are_rejected(field: str, value: float) -> None:
    d = make_ohlcv(4, 50)
    d[field][0, 17] = value
    with pytest.raises(ValidationError, match=field):
        fm.compute_features(**d, min_periods=5)


def test_bad_shapes_and_min_periods_are_rejected() -> None:
    d = make_ohlcv(4, 50)
    with pytest.raises(ValidationError, match="high"):
        fm.compute_features(**(d | {"high": d["high"][:, :-1]}), min_periods=5)
    with pytest.raises(ValidationError, match="min_periods"):
        fm.compute_features(**d, min_periods=0)
    with pytest.raises(ValidationError, match="min_periods"):
        fm.expanding_normalise(np.zeros((1, 3)), min_periods=2.5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- benchmark


def test_benchmark_matches_the_naive_reference_and_rejects_no_rows() -> None:
    from reprolab.benchmark import features as bench

    wanted = goals_of(repo_params().validate.benchmark)["features_rows_per_s"]
    metrics = bench.run(3000, repeats=1, goal=wanted)
    assert metrics["rows"] >= 3000
    assert metrics["naive_rows"] == 800 and metrics["naive_subset"] == "2 series x 400 rows"
    assert metrics["max_abs_diff_vs_naive"] == 0.0 and metrics["bit_identical_vs_naive"]
    goal = metrics["goals"]["features_rows_per_s"]
    assert goal["threshold"] == ">= 1e+06" and isinstance(goal["passed"], bool)
    with pytest.raises(ValidationError, match="rows"):
        bench.run(0, goal=wanted)
