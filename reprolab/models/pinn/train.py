"""train@pinn: the physics-informed option pricer, its serving export, and its accuracy."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reprolab.core import paths
from reprolab.core.config import OptionsParams, Params
from reprolab.datasets.options.generate import domain_bounds, heldout_band
from reprolab.core.io import read_parquet, write_json
from reprolab.core.keras_io import save_keras_model
from reprolab.core.resources import StageResources
from reprolab.core.seeding import int_seed
from reprolab.guard.checkpoint import train_fingerprint
from reprolab.models.pinn.evaluate import evaluate

MODEL = "pinn"
DATASET = "options"
MODEL_DIR = paths.model_dir(MODEL)
METRICS_DIR = paths.train_metrics(MODEL)
CHECKPOINTS = paths.checkpoints(MODEL)
GOALS = {  # issue goals, in-domain test split
    "price_rel_l2": 1e-4,
    "price_max_abs_k": 5e-4,
    "price_mean_abs_k": 3e-5,
    "pde_residual_rms": 1e-3,
    "delta_max_abs": 5e-3,
    "gamma_p95_rel": 0.02,
    "vega_p95_rel_atm": 0.01,
}


def trained_domain(options: OptionsParams) -> dict[str, list[float]]:
    """The box the network was trained on: the declared domain minus an edge held-out band.

    A band inside the range (not at an edge) cannot be cut from a box; it stays inside.
    """
    box = {k: [lo, hi] for k, (lo, hi) in domain_bounds(options.generate.domain).items()}
    column, low, high = heldout_band(options.split.heldout)
    lo, hi = box[column]
    if high >= hi:
        box[column][1] = low
    elif low <= lo:
        box[column][0] = high
    return box


def _parity_error(pricer: Any, test: pd.DataFrame) -> float:
    """max |C - P - (S - K e^{-r tau})| / K of the served prices (K = 1)."""
    x, tau, sigma, r = (test[c].to_numpy() for c in ("x", "tau", "sigma", "r"))
    S = np.exp(x)
    call = pricer.greeks(S, 1.0, tau, sigma, r, "call")["price"]
    put = pricer.greeks(S, 1.0, tau, sigma, r, "put")["price"]
    return float(np.max(np.abs(call - put - (S - np.exp(-r * tau)))))


def train(params: Params, res: StageResources) -> None:
    from dvclive import Live

    from reprolab.datasets.options.features import training_domain_sampler
    from reprolab.models.pinn.model import NumpyPinn, export_weights, train_pinn

    t = params.train.pinn
    feats = paths.features(DATASET)
    splits = {name: read_parquet(feats / name) for name in ("train", "val", "test")}
    collocation = {
        name: read_parquet(feats / "collocation" / f"{name}.parquet")
        for name in ("interior", "terminal", "boundary")
    }
    res.add_rows(sum(len(f) for f in splits.values()))
    live = Live(dir=str(METRICS_DIR / "live"), dvcyaml=False, save_dvc_exp=False)

    def log(phase: str, epoch: int, logs: dict[str, float]) -> None:
        for key, value in sorted(logs.items()):
            split, metric = ("val", key[4:]) if key.startswith("val_") else ("train", key)
            live.log_metric(f"{split}/{metric}", float(value))
        live.next_step()

    start = time.perf_counter()
    result = train_pinn(
        splits["train"],
        splits["val"],
        collocation,
        seed=int_seed(params.seed, "train", MODEL),
        checkpoint_dir=CHECKPOINTS,
        params=t,
        guard=t.guard,
        bounds=domain_bounds(params.options.generate.domain),
        on_epoch_end=log,
        # refinement draws fresh points, never from the held-out band
        candidate_sampler=training_domain_sampler(
            params.options.generate.domain, params.options.split.heldout
        ),
        fingerprint=train_fingerprint(params, MODEL),
        verbose=0,
    )
    seconds = time.perf_counter() - start
    live.end()
    model = result.model
    save_keras_model(model, MODEL_DIR / "model.keras")
    weights = export_weights(model, MODEL_DIR / "weights.npz")
    write_json(MODEL_DIR / "domain.json", trained_domain(params.options))

    served = NumpyPinn.load(weights)
    accuracy = evaluate(served, splits["test"])
    domain = accuracy.get("domain", accuracy["test"])
    report = {
        **accuracy,
        "put_call_parity_max_abs_k": _parity_error(served, splits["test"]),
        "goals": {
            k: {"goal": v, "reached": domain.get(k), "met": bool(domain.get(k, np.inf) <= v)}
            for k, v in GOALS.items()
        },
        "artifact_bytes": weights.stat().st_size,
        "events": list(result.events),
    }
    write_json(METRICS_DIR / "metrics.json", _rounded(report))
    write_json(
        METRICS_DIR / "speed.json",
        {
            "train_seconds": round(seconds, 3),
            "phase_seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        },
    )


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj
