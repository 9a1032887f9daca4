"""Accuracy of the options PINN against the closed form, per maturity bucket and held-out band.

``python -m reprolab.bench.pinn_accuracy [--out metrics/bench/pinn_accuracy.json]``: trains
with the default :class:`reprolab.models.pinn.PinnTrainParams` on the train split of
``data/features/options`` (validation on the val split, collocation points from its
``collocation`` folder), then scores the test split: all of it, the in-domain part, the
held-out band (``region == "heldout"``) and each maturity bucket. ``--export`` also writes the
serving weights (.npz) so the numbers can be reproduced without retraining.

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

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reprolab.blackscholes import bs_price_greeks
from reprolab.io import write_json

DEFAULT_OUT = "metrics/bench/pinn_accuracy.json"
DATA = Path("data/features/options")
WEEK = 7.0 / 365.0
TAU_BUCKETS: list[tuple[str, float, float]] = [
    ("1d-1w", 0.0, WEEK),
    ("1w-1m", WEEK, 30.0 / 365.0),
    ("1m-3m", 30.0 / 365.0, 91.0 / 365.0),
    ("3m-1y", 91.0 / 365.0, 1.0),
    ("1y-2y", 1.0, np.inf),
]


def _read(split: str) -> pd.DataFrame:
    parts = sorted((DATA / split).glob("*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{DATA / split}: no parquet parts (run the options stages)")
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def score(pricer: Any, df: pd.DataFrame) -> dict[str, float]:
    """Metrics (module docstring) of ``pricer.derivatives(x, tau, sigma, r)`` on ``df``."""
    from reprolab.models.pinn import greeks_from_derivatives, pde_residual

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprolab.bench.pinn_accuracy")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--export", default=None, help="also write the serving weights here")
    parser.add_argument("--params", default="{}", help="JSON overrides of PinnTrainParams")
    parser.add_argument("--checkpoint-dir", default="/tmp/reprolab_pinn_bench")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from reprolab.config import load_params
    from reprolab.models.pinn import PinnTrainParams, export_weights, train_pinn

    overrides = json.loads(args.params)
    for k, v in overrides.items():
        if isinstance(v, list):
            overrides[k] = tuple(v)
    params = PinnTrainParams(**overrides)
    seed = load_params().seed
    train, val, test = _read("train"), _read("val"), _read("test")
    collocation = {
        k: pd.read_parquet(DATA / "collocation" / f"{k}.parquet")
        for k in ("interior", "terminal", "boundary")
    }
    start = time.perf_counter()

    def progress(phase: str, epoch: int, logs: dict[str, float]) -> None:
        keys = ("loss", "price", "delta", "pde", "val_price_rel_l2", "val_delta_rmse")
        shown = " ".join(f"{k}={logs[k]:.3g}" for k in keys if k in logs)
        print(f"{time.perf_counter() - start:7.1f}s {phase} {epoch}: {shown}", flush=True)

    result = train_pinn(
        train,
        val,
        collocation,
        seed=seed,
        checkpoint_dir=Path(args.checkpoint_dir),
        params=params,
        on_epoch_end=progress,
    )
    train_seconds = time.perf_counter() - start
    report = {
        "params": {k: v for k, v in params.__dict__.items()},
        "seed": seed,
        "train_seconds": round(train_seconds, 1),
        "seconds_per_step": {k: round(v, 1) for k, v in result.seconds.items()},
        "epochs": len(result.history),
        "events": result.events,
        **evaluate(result.model, test),
    }
    if args.export:
        export_weights(result.model, args.export)
    write_json(args.out, report)
    print(json.dumps({k: report[k] for k in ("train_seconds", "test", "heldout")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
