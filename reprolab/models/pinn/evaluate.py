"""How close the PINN is to the closed form: per maturity bucket and for the held-out band.

Metrics (calls; puts follow by parity and have the same absolute errors):

* ``price_rel_l2``: ||v - v_bs|| / ||v_bs|| over the rows (v = C/K);
* ``price_max_abs_k`` / ``price_mean_abs_k``: max / mean |C - C_bs| / K;
* ``pde_residual_rms``: RMS of the network's PDE residual R (per year, normalised units);
* ``delta_max_abs`` / ``delta_rmse``: absolute delta errors, rows with tau >= 1 week;
* ``gamma_p95_rel``: 95th percentile of |gamma - gamma_bs| / gamma_bs over rows with
  tau >= 1 week and gamma_bs >= 10 % of the at-the-money gamma (same tau, sigma, r);
* ``vega_rmse_k`` / ``theta_rmse_k`` / ``rho_rmse_k``: RMS errors in units of K;
* ``vega_p95_rel_atm`` / ``vega_max_rel_atm``: 95th percentile / max of |vega - vega_bs|
  over the at-the-money-forward vega (S = K e^{-r tau}: the peak of vega in S; same tau,
  sigma, r), rows with tau >= 1 week;
* ``theta_identity_max_abs_k``: max |theta - theta_pde| / K, where theta_pde is the theta the
  Black-Scholes PDE implies from the network's own price, delta and gamma
  (theta = r V - r S delta - sigma^2 S^2 gamma / 2): the Greeks are consistent with each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprolab.datasets.options.blackscholes import bs_price_greeks

WEEK = 7.0 / 365.0
TAU_BUCKETS: list[tuple[str, float, float]] = [
    ("1d-1w", 0.0, WEEK),
    ("1w-1m", WEEK, 30.0 / 365.0),
    ("1m-3m", 30.0 / 365.0, 91.0 / 365.0),
    ("3m-1y", 91.0 / 365.0, 1.0),
    ("1y-2y", 1.0, np.inf),
]


def score(pricer: Any, df: pd.DataFrame) -> dict[str, float]:
    """Metrics (module docstring) of ``pricer.derivatives(x, tau, sigma, r)`` on ``df``."""
    from reprolab.models.pinn.maths import greeks_from_derivatives, pde_residual

    x, tau = df["x"].to_numpy(), df["tau"].to_numpy()
    sigma, r = df["sigma"].to_numpy(), df["r"].to_numpy()
    d = pricer.derivatives(x, tau, sigma, r)
    g = greeks_from_derivatives(d, x, tau, r, 1.0, "call")
    bs = bs_price_greeks(np.exp(x), 1.0, tau, sigma, r, "call")
    err = g["price"] - bs["price"]
    out: dict[str, float] = {
        "rows": len(df),
        "price_rel_l2": float(np.linalg.norm(err) / np.linalg.norm(bs["price"])),
        "price_max_abs_k": float(np.max(np.abs(err))),
        "price_mean_abs_k": float(np.mean(np.abs(err))),
        "pde_residual_rms": float(
            np.sqrt(np.mean(pde_residual(d["v"], d["v_x"], d["v_xx"], d["v_tau"], sigma, r) ** 2))
        ),
    }
    for name in ("vega", "theta", "rho"):
        out[f"{name}_rmse_k"] = float(np.sqrt(np.mean((g[name] - bs[name]) ** 2)))
    S = np.exp(x)
    theta_pde = r * g["price"] - r * S * g["delta"] - 0.5 * sigma**2 * S**2 * g["gamma"]
    out["theta_identity_max_abs_k"] = float(np.max(np.abs(g["theta"] - theta_pde)))
    week = tau >= WEEK
    if week.any():
        de = np.abs(g["delta"][week] - bs["delta"][week])
        out["delta_max_abs"] = float(de.max())
        out["delta_rmse"] = float(np.sqrt(np.mean(de**2)))
        atm = bs_price_greeks(1.0, 1.0, tau, sigma, r, "call")["gamma"]
        atmf_vega = bs_price_greeks(np.exp(-r * tau), 1.0, tau, sigma, r, "call")["vega"]
        ve = np.abs(g["vega"][week] - bs["vega"][week]) / atmf_vega[week]
        out["vega_p95_rel_atm"] = float(np.percentile(ve, 95))
        out["vega_max_rel_atm"] = float(ve.max())
        big = week & (bs["gamma"] >= 0.1 * atm)
        if big.any():
            rel = np.abs(g["gamma"][big] - bs["gamma"][big]) / bs["gamma"][big]
            out["gamma_p95_rel"] = float(np.percentile(rel, 95))
            out["gamma_rows"] = int(big.sum())
    return out


def parity_error(pricer: Any, test: pd.DataFrame) -> float:
    """max |C - P - (S - K e^{-r tau})| / K of the served prices (K = 1)."""
    x, tau, sigma, r = (test[c].to_numpy() for c in ("x", "tau", "sigma", "r"))
    S = np.exp(x)
    call = pricer.greeks(S, 1.0, tau, sigma, r, "call")["price"]
    put = pricer.greeks(S, 1.0, tau, sigma, r, "put")["price"]
    return float(np.max(np.abs(call - put - (S - np.exp(-r * tau)))))


def evaluate(pricer: Any, test: pd.DataFrame) -> dict[str, Any]:
    """Scores on the whole test split, in-domain, held-out band and per maturity bucket."""
    region = test["region"] if "region" in test.columns else pd.Series("domain", test.index)
    out: dict[str, Any] = {"test": score(pricer, test)}
    for name in ("domain", "heldout"):
        part = test[region == name]
        if len(part):
            out[name] = score(pricer, part)
    buckets = {}
    dom = test[region != "heldout"]
    for name, lo, hi in TAU_BUCKETS:
        part = dom[(dom["tau"] >= lo) & (dom["tau"] < hi)]
        if len(part):
            buckets[name] = score(pricer, part)
    out["domain_by_tau"] = buckets
    return out
