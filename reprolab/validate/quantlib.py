"""QuantLib's ``AnalyticEuropeanEngine``: the outside reference the closed form (and so the
PINN's yardstick) is checked against, and the per-option timing the benchmark compares to.

QuantLib dates maturities in whole days: each contract's ``tau`` is rounded to days
(Actual/365 Fixed) and the rounded ``tau`` is returned, so a caller compares like with like.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


class QuantLibPricer:
    """One engine over mutable quotes: each option reprices by setting spot, rate and vol."""

    def __init__(self) -> None:
        import QuantLib as ql

        self.ql = ql
        self.today = ql.Date(15, 1, 2024)
        ql.Settings.instance().evaluationDate = self.today
        dc = ql.Actual365Fixed()
        self.spot, self.rate, self.vol = (ql.SimpleQuote(v) for v in (1.0, 0.0, 0.2))
        process = ql.BlackScholesProcess(
            ql.QuoteHandle(self.spot),
            ql.YieldTermStructureHandle(ql.FlatForward(self.today, ql.QuoteHandle(self.rate), dc)),
            ql.BlackVolTermStructureHandle(
                ql.BlackConstantVol(self.today, ql.NullCalendar(), ql.QuoteHandle(self.vol), dc)
            ),
        )
        self.engine = ql.AnalyticEuropeanEngine(process)

    def option(self, S: float, K: float, days: int, r: float, sigma: float, kind: str) -> Any:
        ql = self.ql
        self.spot.setValue(S)
        self.rate.setValue(r)
        self.vol.setValue(sigma)
        qtype = ql.Option.Call if kind == "call" else ql.Option.Put
        option = ql.EuropeanOption(
            ql.PlainVanillaPayoff(qtype, K), ql.EuropeanExercise(self.today + days)
        )
        option.setPricingEngine(self.engine)
        return option

    def price_greeks(
        self, S: float, K: float, days: int, r: float, sigma: float, kind: str
    ) -> dict[str, float]:
        """Price and Greeks of one option (theta per year, vega and rho per 1.00)."""
        o = self.option(S, K, days, r, sigma, kind)
        return {
            "price": o.NPV(),
            "delta": o.delta(),
            "gamma": o.gamma(),
            "vega": o.vega(),
            "theta": o.theta(),
            "rho": o.rho(),
        }


def whole_days(tau: np.ndarray) -> np.ndarray:
    """Maturities in whole days (at least one), as QuantLib dates them."""
    return np.maximum(np.rint(np.asarray(tau, dtype=float) * 365.0), 1).astype(int)


def quantlib_prices(
    S: np.ndarray, K: float, tau: np.ndarray, r: np.ndarray, sigma: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """QuantLib's prices of ``kind`` options and the day-rounded maturities they priced."""
    pricer, days = QuantLibPricer(), whole_days(tau)
    out = np.empty(len(days))
    for i in range(len(days)):
        out[i] = pricer.option(
            float(S[i]), float(K), int(days[i]), float(r[i]), float(sigma[i]), kind
        ).NPV()
    return out, days / 365.0


def seconds_per_option(S: np.ndarray, tau: np.ndarray, r: np.ndarray, sigma: np.ndarray) -> float:
    """Wall seconds per call option priced with its Greeks, one at a time."""
    pricer, days = QuantLibPricer(), whole_days(tau)
    start = time.perf_counter()
    for i in range(len(days)):
        pricer.price_greeks(float(S[i]), 1.0, int(days[i]), float(r[i]), float(sigma[i]), "call")
    return (time.perf_counter() - start) / len(days)
