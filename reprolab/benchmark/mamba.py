"""Mamba speed against its equal-size recurrent comparator, measured side by side.

* inference: windows per second of the trained ``models/mamba/model.keras`` and of the
  comparator the stage trained beside it, on the same test windows;
* training step: both models built fresh from ``train.mamba`` and timed with
  ``train_on_batch`` in alternation (ABAB...) so machine noise hits both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from reprolab.core import paths
from reprolab.core.config import MambaTrainParams
from reprolab.core.io import read_json, read_parquet
from reprolab.core.resources import MemoryBudget


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # the first call traces and compiles
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def inference(t: MambaTrainParams, windows: int, budget_mb: int) -> dict[str, Any]:
    """Windows per second of the trained Mamba and comparator on the first ``windows``
    test windows (all of them when the split holds fewer), best of three. Only those
    windows are materialised, scaled as in training."""
    from reprolab.core.keras_io import load_keras_model
    from reprolab.datasets.markets.windows import materialize

    feats = paths.features("markets")
    registry = read_json(feats / "registry.json")
    names, window = [f["name"] for f in registry["features"]], int(registry["window"])
    chosen = read_parquet(feats / "windows" / "test.parquet").iloc[:windows]
    MemoryBudget(budget_mb).check(
        len(chosen) * window * len(names) * 4 * 2, f"materialising {len(chosen):,} test windows"
    )
    rows = read_parquet(feats / "rows" / "test")
    x, _ = materialize(rows, chosen, names, window, read_json(feats / "scaler.json"))
    model_dir = paths.model_dir("mamba")
    files = {"mamba": model_dir / "model.keras", t.comparator: model_dir / "comparators"}
    files[t.comparator] = files[t.comparator] / f"{t.comparator}.keras"
    rates = {}
    for name, path in files.items():
        model = load_keras_model(path, compile=False)
        seconds = _best_seconds(lambda m=model: m.predict(x, batch_size=1024, verbose=0), 3)
        rates[name] = len(x) / seconds
    return {
        "windows": len(x),
        "windows_per_s": {k: round(v, 1) for k, v in rates.items()},
        f"mamba_over_{t.comparator}": round(rates["mamba"] / rates[t.comparator], 4),
    }


def train_step(t: MambaTrainParams, steps: int, window: int, n_features: int) -> dict[str, Any]:
    """Median ``train_on_batch`` time of a fresh Mamba and its comparator at equal size."""
    import keras

    from reprolab.models.mamba.baselines import build_recurrent_classifier, units_matching
    from reprolab.models.mamba.keras_metrics import direction_compile_kwargs
    from reprolab.models.mamba.model import build_mamba_classifier, resolve_scan

    keras.utils.set_random_seed(0)
    mamba = build_mamba_classifier(n_features, window, t, seed=0)
    units = units_matching(t.comparator, n_features, mamba.count_params())
    other = build_recurrent_classifier(t.comparator, n_features, window, units, seed=0)
    models = {"mamba": mamba, t.comparator: other}
    for model in models.values():
        model.compile(**direction_compile_kwargs(t.learning_rate))
    gen = np.random.default_rng(0)
    x = gen.standard_normal((t.batch_size, window, n_features)).astype(np.float32)
    y = gen.integers(0, 2, t.batch_size).astype(np.float32)
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(steps + 3):
        for name, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            if step >= 3:  # the first steps trace and compile
                times[name].append(time.perf_counter() - start)
    ms = {name: 1000 * float(np.median(v)) for name, v in times.items()}
    return {
        "batch_size": t.batch_size,
        "window": window,
        "features": n_features,
        "steps": steps,
        "scan": resolve_scan(t.scan),
        "params": {name: int(m.count_params()) for name, m in models.items()},
        "step_ms_median": {k: round(v, 3) for k, v in ms.items()},
        f"mamba_over_{t.comparator}": round(ms["mamba"] / ms[t.comparator], 4),
    }
