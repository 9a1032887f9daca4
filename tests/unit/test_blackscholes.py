"""The closed-form Black–Scholes labels agree with QuantLib and with high-precision arithmetic.

The PINN is trained and judged on these numbers, so they are checked against an independent
implementation (QuantLib's AnalyticEuropeanEngine) on 10,000 random contracts, against a
60-digit mpmath evaluation of the same formulas, and for the identities the model relies on.
"""

from __future__ import annotations

import re

import mpmath
import numpy as np
import pytest
import QuantLib as ql

from reprolab.core.errors import ValidationError
from reprolab.datasets.options.blackscholes import GREEKS, bs_price_greeks, payoff
from reprolab.validate.quantlib import QuantLibPricer

SEED = 20261121
N_CONTRACTS = 10_000
RTOL = 1e-10
# Absolute floor, in units of the Greek's natural scale (K for price/vega/theta/rho, 1 for
# delta, 1/K for gamma). Measured on these 10,000 contracts (QuantLib 1.44): after RTOL the
# largest residual |ours - QuantLib| / scale is 9.6e-16 (call price; call delta 9.1e-16, all
# others <= 4.5e-16). Pure relative agreement is limited by QuantLib, not by us: it forms the
# put's N(-d) as 1 - N(d), so it returns 0 for 235 deep OTM puts (we underflow on 5), and its
# relative error against a 60-digit reference reaches 1e-5 for tiny call prices where ours
# stays below 5e-10 (test_matches_high_precision_reference). 1e-14 keeps a 10x margin over the
# measured figure and still fails any formula or unit mistake by many orders of magnitude.
ATOL_PER_SCALE = 1e-14
# Greeks other than the price involve no cancellation; against 60-digit arithmetic their
# relative error is at most |d| * (rounding of d), measured <= 9.7e-13 on 10,000 contracts.
GREEK_RTOL = 1e-11


def _contracts(n: int, seed: int) -> dict[str, np.ndarray]:
    """Random contracts over the data set's domain; maturities are whole days (tau = d/365)."""
    g = np.random.default_rng(seed)
    K = g.uniform(50.0, 150.0, n)
    days = g.integers(1, 731, n)
    return {
        "S": K * g.uniform(0.5, 2.0, n),
        "K": K,
        "days": days,
        "tau": days / 365.0,
        "sigma": g.uniform(0.05, 0.8, n),
        "r": g.uniform(0.0, 0.10, n),
    }


def _scale(greek: str, K: np.ndarray) -> np.ndarray:
    return {"delta": np.ones_like(K), "gamma": 1.0 / K}.get(greek, K)


@pytest.fixture(scope="module")
def contracts() -> dict[str, np.ndarray]:
    return _contracts(N_CONTRACTS, SEED)


@pytest.fixture(scope="module")
def quantlib_values(contracts: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """QuantLib's price and Greeks (theta per year, vega and rho per 1.00) for each contract."""
    settings = ql.Settings.instance()
    saved = settings.evaluationDate
    pricer = QuantLibPricer()
    n = len(contracts["S"])
    out = {kind: {g: np.empty(n) for g in GREEKS} for kind in ("call", "put")}
    try:
        for i in range(n):
            args = (float(contracts["S"][i]), float(contracts["K"][i]), int(contracts["days"][i]))
            market = (float(contracts["r"][i]), float(contracts["sigma"][i]))
            for kind in ("call", "put"):
                for greek, value in pricer.price_greeks(*args, *market, kind).items():
                    out[kind][greek][i] = value
    finally:
        settings.evaluationDate = saved
    return out


def _assert_close(
    got: np.ndarray, want: np.ndarray, rtol: float, atol: np.ndarray, kind: str, greek: str
) -> None:
    bad = ~(np.abs(got - want) <= rtol * np.abs(want) + atol)
    assert not bad.any(), (
        f"{kind} {greek}: {bad.sum()} contracts differ, first at row {np.argmax(bad)}: "
        f"got {got[bad][0]!r}, want {want[bad][0]!r}"
    )


def _ours(c: dict[str, np.ndarray], kind: str) -> dict[str, np.ndarray]:
    return bs_price_greeks(c["S"], c["K"], c["tau"], c["sigma"], c["r"], kind)


@pytest.mark.parametrize("greek", GREEKS)
@pytest.mark.parametrize("kind", ["call", "put"])
def test_matches_quantlib(kind: str, greek: str, contracts, quantlib_values) -> None:
    """Each Greek equals QuantLib's to 1e-10 relative (plus a measured float64 floor)."""
    ours = _ours(contracts, kind)[greek]
    theirs = quantlib_values[kind][greek]
    _assert_close(ours, theirs, RTOL, ATOL_PER_SCALE * _scale(greek, contracts["K"]), kind, greek)


def _mp_reference(S: float, K: float, tau: float, sigma: float, r: float) -> dict:
    """The same closed forms in 60-digit arithmetic from the float64 inputs (no cancellation)."""
    with mpmath.workdps(60):
        S_, K_, t, v, r_ = (mpmath.mpf(float(a)) for a in (S, K, tau, sigma, r))
        s = v * mpmath.sqrt(t)
        d1 = (mpmath.log(S_ / K_) + (r_ + v * v / 2) * t) / s
        d2 = d1 - s
        dk = K_ * mpmath.exp(-r_ * t)
        pdf = mpmath.npdf(d1)
        N = mpmath.ncdf
        decay = -S_ * pdf * v / (2 * mpmath.sqrt(t))
        common = {"gamma": pdf / (S_ * s), "vega": S_ * pdf * mpmath.sqrt(t)}
        call = {
            "price": S_ * N(d1) - dk * N(d2),
            "delta": N(d1),
            "theta": decay - r_ * dk * N(d2),
            "rho": t * dk * N(d2),
            **common,
        }
        put = {
            "price": dk * N(-d2) - S_ * N(-d1),
            "delta": -N(-d1),
            "theta": decay + r_ * dk * N(-d2),
            "rho": -t * dk * N(-d2),
            **common,
        }
        return {
            "call": {k: float(x) for k, x in call.items()},
            "put": {k: float(x) for k, x in put.items()},
        }


def test_matches_high_precision_reference(contracts) -> None:
    """Against 60-digit arithmetic the Greeks are good to 1e-11 relative (except where they
    underflow), and prices to RTOL with the same floor as above: the price formula itself
    cancels for deep OTM options (measured worst: 4.8e-10 relative, 4.8e-16 K absolute)."""
    idx = np.arange(0, N_CONTRACTS, 10)  # 1,000 contracts keep mpmath to about a second
    c = {k: v[idx] for k, v in contracts.items()}
    ref = [
        _mp_reference(c["S"][i], c["K"][i], c["tau"][i], c["sigma"][i], c["r"][i])
        for i in range(len(idx))
    ]
    for kind in ("call", "put"):
        ours = _ours(c, kind)
        for greek in GREEKS:
            want = np.array([row[kind][greek] for row in ref])
            if greek == "price":
                _assert_close(ours[greek], want, RTOL, ATOL_PER_SCALE * c["K"], kind, greek)
            else:
                _assert_close(
                    ours[greek], want, GREEK_RTOL, np.full_like(want, 1e-300), kind, greek
                )


def test_deep_otm_put_keeps_relative_accuracy() -> None:
    """A put far out of the money is a tiny positive number, not parity's rounding noise."""
    S, K, tau, sigma, r = 200.0, 100.0, 10 / 365, 0.2, 0.05
    got = bs_price_greeks(S, K, tau, sigma, r, "put")
    want = _mp_reference(S, K, tau, sigma, r)["put"]
    assert 0.0 < want["price"] < 1e-80
    for greek in GREEKS:
        assert got[greek] == pytest.approx(want[greek], rel=1e-10, abs=0.0), greek
    # what parity would give instead: pure rounding error of size ~1e-14 K
    call = bs_price_greeks(S, K, tau, sigma, r, "call")["price"]
    via_parity = call - S + K * np.exp(-r * tau)
    assert abs(via_parity - want["price"]) > 0.5 * want["price"]


def test_put_call_parity(contracts) -> None:
    """C - P = S - K e^{-r tau}, and the Greeks of both sides match, to 1e-12 K."""
    c, K = contracts, contracts["K"]
    call, put = _ours(c, "call"), _ours(c, "put")
    dk = K * np.exp(-c["r"] * c["tau"])
    expect = {
        "price": c["S"] - dk,
        "delta": np.ones_like(K),
        "gamma": np.zeros_like(K),
        "vega": np.zeros_like(K),
        "theta": -c["r"] * dk,
        "rho": c["tau"] * dk,
    }
    for greek, want in expect.items():
        diff = call[greek] - put[greek]
        np.testing.assert_allclose(diff, want, rtol=0, atol=1e-12 * K.max(), err_msg=greek)


@pytest.mark.parametrize("kind", ["call", "put"])
def test_units_match_finite_differences(kind: str) -> None:
    """Theta is per year of calendar time (-dV/dtau), vega and rho per 1.00 (bump checks)."""
    S, K, tau, sigma, r, h = 105.0, 100.0, 0.5, 0.25, 0.03, 1e-5
    g = bs_price_greeks(S, K, tau, sigma, r, kind)

    def price(**kw: float) -> float:
        args = {"S": S, "K": K, "tau": tau, "sigma": sigma, "r": r} | kw
        return float(bs_price_greeks(**args, kind=kind)["price"])

    fd = {
        "delta": (price(S=S + h) - price(S=S - h)) / (2 * h),
        "gamma": (price(S=S + 1e-2) - 2 * price() + price(S=S - 1e-2)) / 1e-4,
        "vega": (price(sigma=sigma + h) - price(sigma=sigma - h)) / (2 * h),
        "theta": -(price(tau=tau + h) - price(tau=tau - h)) / (2 * h),
        "rho": (price(r=r + h) - price(r=r - h)) / (2 * h),
    }
    for greek, value in fd.items():
        assert float(g[greek]) == pytest.approx(value, rel=1e-5, abs=0.0), f"{kind} {greek}"


def test_broadcasts_like_numpy() -> None:
    """Scalars and arrays broadcast; each element equals the scalar evaluation."""
    S = np.array([[80.0], [100.0], [120.0]])
    tau = np.array([0.1, 0.5, 1.0, 2.0])
    out = bs_price_greeks(S, 100.0, tau, 0.3, 0.02, "put")
    assert all(v.shape == (3, 4) and v.dtype == np.float64 for v in out.values())
    for i in range(3):
        for j in range(4):
            one = bs_price_greeks(float(S[i, 0]), 100.0, float(tau[j]), 0.3, 0.02, "put")
            assert one["price"].shape == ()
            for greek in GREEKS:
                assert out[greek][i, j] == one[greek]


@pytest.mark.parametrize(
    ("field", "bad", "rule"),
    [
        ("S", -5.0, "must be > 0"),
        ("S", 0.0, "must be > 0"),
        ("K", -1.0, "must be > 0"),
        ("tau", -0.1, "must be > 0"),
        ("tau", 0.0, "must be > 0"),
        ("sigma", 0.0, "must be > 0"),
        ("S", np.nan, "must be finite"),
        ("K", np.inf, "must be finite"),
        ("tau", np.nan, "must be finite"),
        ("sigma", -np.inf, "must be finite"),
        ("r", np.nan, "must be finite"),
    ],
)
def test_bad_input_names_field_and_first_row(field: str, bad: float, rule: str) -> None:
    """A bad value raises ValidationError naming the field and its first offending row."""
    args = {"S": 100.0, "K": 100.0, "tau": 0.5, "sigma": 0.2, "r": 0.01}
    column = np.full(5, args[field])
    column[2] = bad
    column[4] = bad  # only the first one is reported
    args[field] = column
    pattern = rf"bs_price_greeks: {field} {rule} \(row 2: {re.escape(str(bad))}\)"
    with pytest.raises(ValidationError, match=pattern):
        bs_price_greeks(**args)


def test_negative_rate_is_allowed() -> None:
    """Rates may be negative (only finiteness is required), unlike S, K, tau and sigma."""
    out = bs_price_greeks(100.0, 100.0, 1.0, 0.2, -0.01, "call")
    assert np.isfinite(out["price"]) and out["price"] > 0


def test_unknown_kind_and_bad_shapes_raise() -> None:
    """An unknown option kind or shapes that do not broadcast are input errors."""
    with pytest.raises(ValidationError, match="kind must be 'call' or 'put'"):
        bs_price_greeks(100.0, 100.0, 1.0, 0.2, 0.0, kind="straddle")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="kind"):
        payoff(100.0, 100.0, "Call")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="do not broadcast"):
        bs_price_greeks(np.ones(3) * 100, np.ones(4) * 100, 1.0, 0.2, 0.0)
    with pytest.raises(ValidationError, match="S must be numeric"):
        bs_price_greeks("abc", 100.0, 1.0, 0.2, 0.0)  # type: ignore[arg-type]


def test_payoff_values() -> None:
    """Payoff is max(S - K, 0) for calls and max(K - S, 0) for puts."""
    S = np.array([50.0, 100.0, 150.0])
    np.testing.assert_array_equal(payoff(S, 100.0, "call"), [0.0, 0.0, 50.0])
    np.testing.assert_array_equal(payoff(S, 100.0, "put"), [50.0, 0.0, 0.0])
    with pytest.raises(ValidationError, match=r"payoff: S must be >= 0 \(row 1: -1.0\)"):
        payoff(np.array([1.0, -1.0]), 1.0, "call")


@pytest.mark.parametrize("kind", ["call", "put"])
def test_price_tends_to_payoff(kind: str) -> None:
    """As tau -> 0 the price converges to the payoff (the terminal condition is consistent):
    within 1e-9 K away from the money, and within the time-value bound S sigma sqrt(tau) at it."""
    K = 100.0
    S = K * np.exp(np.linspace(-0.7, 0.7, 141))  # includes S = K
    sigma, r, tau = 0.8, 0.1, 1e-10
    price = bs_price_greeks(S, K, tau, sigma, r, kind)["price"]
    gap = np.abs(price - payoff(S, K, kind))
    away = np.abs(np.log(S / K)) >= 0.01
    assert away.sum() > 100 and (~away).any()
    assert gap[away].max() <= 1e-9 * K
    assert np.all(gap <= S * sigma * np.sqrt(tau) + 1e-9 * K)
