"""The PINN judged from its exported weights, against the closed form on the test split."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprolab.core import paths
from reprolab.core.io import read_json
from reprolab.core.tables import read_parquet
from reprolab.datasets.options.blackscholes import bs_price_greeks
from reprolab.models.pinn.evaluate import TAU_BUCKETS
from reprolab.validate.quantlib import quantlib_prices

FRESH_FIGURES = ("price_rel_l2", "price_max_abs_k", "price_mean_abs_k")


def error_grid(pricer: Any, df: pd.DataFrame, moneyness_bins: int = 8) -> list[dict[str, Any]]:
    """Max and mean |C - C_bs| / K per cell of moneyness S/K (equal widths) x maturity
    bucket: where in the box the price error lives."""
    x, tau = df["x"].to_numpy(), df["tau"].to_numpy()
    sigma, r = df["sigma"].to_numpy(), df["r"].to_numpy()
    price = pricer.greeks(np.exp(x), 1.0, tau, sigma, r, "call")["price"]
    err = np.abs(price - bs_price_greeks(np.exp(x), 1.0, tau, sigma, r, "call")["price"])
    m = np.exp(x)
    edges = np.linspace(m.min(), m.max(), moneyness_bins + 1)
    cell = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, moneyness_bins - 1)
    rows = []
    for name, lo, hi in TAU_BUCKETS:
        in_tau = (tau >= lo) & (tau < hi)
        for i in range(moneyness_bins):
            e = err[in_tau & (cell == i)]
            rows.append(
                {
                    "tau": name,
                    "moneyness_lo": float(edges[i]),
                    "moneyness_hi": float(edges[i + 1]),
                    "rows": int(e.size),
                    "max_abs_k": float(e.max()) if e.size else None,
                    "mean_abs_k": float(e.mean()) if e.size else None,
                }
            )
    return rows


def fresh_sample(domain: dict[str, list[float]], n: int, seed: int) -> pd.DataFrame:
    """``n`` contracts drawn uniformly over the trained box (``models/pinn/domain.json``),
    with a generator of their own: rows no split holds, so the goals hold over the whole
    box and not only near the training rows."""
    gen = np.random.default_rng(np.random.SeedSequence([seed, 0x7E57]))
    return pd.DataFrame({name: gen.uniform(lo, hi, n) for name, (lo, hi) in sorted(domain.items())})


def price_errors(pricer: Any, df: pd.DataFrame, kind: str) -> dict[str, Any]:
    """Relative L2, max and mean |V - V_bs| / K of calls or puts (K = 1), and where the
    largest error sits."""
    x, tau = df["x"].to_numpy(), df["tau"].to_numpy()
    sigma, r = df["sigma"].to_numpy(), df["r"].to_numpy()
    price = pricer.greeks(np.exp(x), 1.0, tau, sigma, r, kind)["price"]
    exact = bs_price_greeks(np.exp(x), 1.0, tau, sigma, r, kind)["price"]
    err = np.abs(price - exact)
    worst = int(np.argmax(err))
    return {
        "rows": len(df),
        "price_rel_l2": float(np.linalg.norm(err) / np.linalg.norm(exact)),
        "price_max_abs_k": float(err[worst]),
        "price_mean_abs_k": float(err.mean()),
        "worst": {
            "moneyness": float(np.exp(x[worst])),
            "tau": float(tau[worst]),
            "sigma": float(sigma[worst]),
            "r": float(r[worst]),
        },
    }


def quantlib_check(df: pd.DataFrame, pricer: Any) -> dict[str, Any]:
    """The closed form the PINN is judged by, and the PINN itself, against QuantLib's
    AnalyticEuropeanEngine on ``df`` (calls and puts, maturities rounded to whole days)."""
    S, sigma, r = np.exp(df["x"].to_numpy()), df["sigma"].to_numpy(), df["r"].to_numpy()
    closed_gap = pinn_gap = 0.0
    for kind in ("call", "put"):
        ql_price, tau = quantlib_prices(S, 1.0, df["tau"].to_numpy(), r, sigma, kind)
        closed = bs_price_greeks(S, 1.0, tau, sigma, r, kind)["price"]
        served = pricer.greeks(S, 1.0, tau, sigma, r, kind)["price"]
        closed_gap = max(closed_gap, float(np.max(np.abs(closed - ql_price))))
        pinn_gap = max(pinn_gap, float(np.max(np.abs(served - ql_price))))
    return {"rows": len(df), "closed_form_max_abs_k": closed_gap, "pinn_max_abs_k": pinn_gap}


def pinn_judgement(seed: int, fresh_contracts: int, quantlib_contracts: int) -> dict[str, Any]:
    """The exported PINN scored again here. Judged: the in-domain test split, a fresh seeded
    sample over the trained box (calls, and puts by their relative L2), put-call parity of
    the served prices, and the closed form against QuantLib. Reported: the held-out band, the
    maturity buckets, and the error over moneyness x maturity."""
    from reprolab.models.pinn.evaluate import evaluate, parity_error
    from reprolab.models.pinn.numpy_model import NumpyPinn

    model_dir = paths.model_dir("pinn")
    served = NumpyPinn.load(model_dir / "weights.npz")
    test = read_parquet(paths.features("options") / "test")
    scores = evaluate(served, test)
    in_domain = test[test["region"] != "heldout"] if "region" in test.columns else test
    fresh = fresh_sample(read_json(model_dir / "domain.json"), fresh_contracts, seed)
    sample = {
        "call": price_errors(served, fresh, "call"),
        "put": price_errors(served, fresh, "put"),
    }
    parity = parity_error(served, test)
    quantlib = quantlib_check(fresh.iloc[:quantlib_contracts], served)
    figures = {
        **scores.get("domain", scores["test"]),
        **{f"fresh_{k}": sample["call"][k] for k in FRESH_FIGURES},
        **{f"fresh_put_{k}": sample["put"][k] for k in FRESH_FIGURES},
        "put_price_rel_l2": price_errors(served, in_domain, "put")["price_rel_l2"],
        "put_call_parity_max_abs_k": parity,
        "quantlib_max_abs_k": quantlib["closed_form_max_abs_k"],
    }
    return {
        **scores,
        "fresh_sample": sample,
        "quantlib": quantlib,
        "put_call_parity_max_abs_k": parity,
        "error_grid": error_grid(served, in_domain),
        "figures": figures,
    }
