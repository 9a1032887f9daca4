"""Mamba speed against its equal-size recurrent comparator, measured side by side.

* inference: forecasts per second of the trained ``models/mamba/model.keras`` and of the
  recurrent comparator the stage trained beside it, both reading the same test series whole,
  and of the Mamba one day at a time through the numpy step path;
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
from reprolab.core.io import read_json
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
    """Forecasts per second, best of three, on the first test series that hold ``windows``
    targets (at least one series): the trained Mamba and the recurrent comparator each read
    those series whole (one pass predicts every day, as both were trained), and the
    Mamba's numpy step path predicts one new day for every series (the serving path)."""
    from reprolab.guard.keras.saving import load_keras_model
    from reprolab.models.mamba import sequences as sq
    from reprolab.models.mamba.data import load_market_splits
    from reprolab.serve.mamba_step import MambaStepper

    data, names, _ = load_market_splits(MemoryBudget(budget_mb))
    test = data["test"]
    which, _ = sq.positions(test.series, test.target_rows)
    per_series = np.bincount(which, minlength=len(test.series))
    n_series = int(np.searchsorted(np.cumsum(per_series), min(windows, len(test)))) + 1
    n_series = min(n_series, len(test.series))
    targets = int(per_series[:n_series].sum())
    model_dir = paths.model_dir("mamba")
    inputs = read_json(model_dir / "inputs.json")["inputs"]
    scaled = test.scaled[:, [names.index(c) for c in inputs]]
    series, _ = sq.full_series(scaled, test.series[:n_series])
    mamba = load_keras_model(model_dir / "model.keras", compile=False)
    other = load_keras_model(model_dir / "comparators" / f"{t.comparator}.keras", compile=False)
    rates = {}
    for name, model in (("mamba", mamba), (t.comparator, other)):
        seconds = _best_seconds(lambda m=model: m.predict(series, batch_size=64, verbose=0), 3)
        rates[name] = targets / seconds
    stepper = MambaStepper(mamba)
    state = stepper.initial_state(len(series))
    days = min(series.shape[1], 256)
    step_s = _best_seconds(lambda: [stepper.step(state, series[:, d]) for d in range(days)], 3)
    rates["mamba_step"] = len(series) * days / step_s
    return {
        "targets": {"mamba": targets, "mamba_step": len(series) * days, t.comparator: targets},
        "series": n_series,
        "forecasts_per_s": {k: round(v, 1) for k, v in rates.items()},
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
