"""The PINN judged from its exported weights, against the closed form on the test split."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reprolab.core import paths
from reprolab.core.io import read_parquet
from reprolab.datasets.options.blackscholes import bs_price_greeks
from reprolab.models.pinn.evaluate import TAU_BUCKETS


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


def pinn_judgement() -> dict[str, Any]:
    """The exported PINN scored again here, against the closed form on the test split: the
    in-domain figures are judged; the held-out band, the maturity buckets and the error over
    moneyness x maturity are reported."""
    from reprolab.models.pinn.evaluate import evaluate, parity_error
    from reprolab.models.pinn.numpy_model import NumpyPinn

    served = NumpyPinn.load(paths.model_dir("pinn") / "weights.npz")
    test = read_parquet(paths.features("options") / "test")
    scores = evaluate(served, test)
    in_domain = test[test["region"] != "heldout"] if "region" in test.columns else test
    return {
        **scores,
        "put_call_parity_max_abs_k": parity_error(served, test),
        "error_grid": error_grid(served, in_domain),
        "figures": scores.get("domain", scores["test"]),
    }
