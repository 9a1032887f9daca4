"""train@mamba: one pooled Mamba across all symbols (or one per symbol), its comparators,
and their metrics, all on exactly the same windows. Never reads data/truth."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reprolab.core import paths
from reprolab.core.config import MambaTrainParams, Params
from reprolab.core.io import locked_update, read_json, read_parquet, write_json
from reprolab.core.keras_io import save_keras_model
from reprolab.core.report import LiveLog, classification_report, keras_names, rounded
from reprolab.core.resources import MemoryBudget, StageResources
from reprolab.core.seeding import int_seed, rng
from reprolab.datasets.markets.windows import materialize
from reprolab.guard.checkpoint import train_fingerprint

MODEL = "mamba"
DATASET = "markets"
SPLITS = ("train", "val", "test")
MODEL_DIR = paths.model_dir(MODEL)
METRICS_DIR = paths.train_metrics(MODEL)
# Outside every DVC output: DVC deletes outputs before a stage runs, checkpoints must survive.
CHECKPOINTS = paths.checkpoints(MODEL)


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet TensorFlow's C++ logs; optionally pin thread pools (one per pool worker)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if threads is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


@dataclass
class Split:
    x: np.ndarray  # (n, window, n_features) float32, scaled with the train-only scaler
    y: np.ndarray  # (n,) int8: 1 if the next close is higher
    windows: pd.DataFrame  # symbol, copy, date, ... of each window
    last_up: np.ndarray  # (n,) bool: was the window's last return positive (persistence)

    def select(self, mask: np.ndarray) -> Split:
        return Split(self.x[mask], self.y[mask], self.windows[mask], self.last_up[mask])


def load_splits(budget: MemoryBudget) -> tuple[dict[str, Split], list[str], int]:
    """Materialise the windows of every split from data/features/markets."""
    feats = paths.features(DATASET)
    registry = read_json(feats / "registry.json")
    scaler = read_json(feats / "scaler.json")
    names = [f["name"] for f in registry["features"]]
    window = int(registry["window"])
    out = {}
    for name in SPLITS:
        rows = read_parquet(feats / "rows" / name)
        windows = read_parquet(feats / "windows" / f"{name}.parquet")
        budget.check(
            len(windows) * window * len(names) * 4 * 2,
            f"materialising {len(windows):,} {name} windows of {window} x {len(names)}",
        )
        x, y = materialize(rows, windows, names, window, scaler)
        close = rows["close"].to_numpy()
        end = windows["row"].to_numpy()
        out[name] = Split(x, y, windows, close[end] > close[end - 1])
    return out, names, window


def mamba_builder(t: MambaTrainParams, n_features: int, window: int, seed: int) -> Callable:
    from reprolab.models.mamba.model import build_mamba_classifier

    return lambda: build_mamba_classifier(n_features, window, t, seed=seed)


def fit_guarded(
    build: Callable,
    data: dict[str, Split],
    t: MambaTrainParams,
    seed: int,
    name: str,
    live_dir: Path | None,
    fingerprint: str,
    verbose: int | None = None,
) -> tuple[Any, dict[str, Any], float]:
    """Train under the guard; returns (model, training summary, seconds per step)."""
    from reprolab.guard.keras import train_guarded
    from reprolab.guard.schedule import lr_multiplier
    from reprolab.models.mamba.keras_metrics import direction_compile_kwargs

    live = LiveLog(live_dir) if live_dir is not None else None
    log = (lambda epoch, logs: live.step(keras_names(logs))) if live is not None else None
    if verbose is None:  # a bar per batch on a terminal, a line per epoch in logs and CI
        verbose = 1 if sys.stderr.isatty() else 2
    start = time.perf_counter()
    result = train_guarded(
        build,
        data["train"].x,
        data["train"].y,
        data["val"].x,
        data["val"].y,
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        patience=t.patience,
        seed=seed,
        checkpoint_dir=CHECKPOINTS / name,
        guard=t.guard,
        compile_kwargs=direction_compile_kwargs,
        on_epoch_end=log,
        fingerprint=fingerprint,
        verbose=verbose,
        lr_multiplier=lambda epoch: lr_multiplier(epoch, t.epochs, t.schedule, 0, t.min_lr_ratio),
    )
    seconds = time.perf_counter() - start
    if live is not None:
        live.end()
    epochs_run = len(result.history)
    steps = epochs_run * -(-len(data["train"].y) // result.batch_size)
    summary = {
        "best_epoch": int(result.best_epoch),
        "epochs_run": epochs_run,
        "batch_size": int(result.batch_size),
        "learning_rate": float(result.learning_rate),
        "events": list(result.events),
    }
    return result.model, summary, seconds / max(steps, 1)


def predict_proba(model: Any, x: np.ndarray) -> np.ndarray:
    return model.predict(x, batch_size=1024, verbose=0).reshape(-1).astype(np.float64)


def _save_predictions(path: Path, split: Split, p_up: np.ndarray) -> None:
    from reprolab.core.io import write_parquet

    frame = split.windows[["symbol", "date"]].reset_index(drop=True).copy()
    frame["probability"] = p_up
    write_parquet(path, frame)


def _reports(
    seed: int, name: str, data: dict[str, Split], probs: dict[str, np.ndarray], n: int
) -> dict[str, Any]:
    return {
        split: classification_report(data[split].y, probs[split], n, rng(seed, MODEL, name, split))
        for split in ("val", "test")
    }


@dataclass
class Trained:
    """One model's test-split evidence: probabilities, what decides them, and its costs."""

    probs: dict[str, np.ndarray]  # "val", "test" -> P(up) per window
    info: dict[str, Any]  # deterministic: parameters, size in bytes, training summary
    train_seconds: float
    inference_ms_per_1000: float  # test-split prediction time per 1,000 windows


def _evaluate(predict: Callable[[np.ndarray], np.ndarray], data: dict[str, Split]) -> tuple:
    """Probabilities on val and test; the test-split prediction time per 1,000 windows."""
    probs = {"val": predict(data["val"].x)}
    start = time.perf_counter()
    probs["test"] = predict(data["test"].x)
    ms = 1000 * (time.perf_counter() - start) / max(len(data["test"].y), 1) * 1000
    return probs, ms


def comparators(
    data: dict[str, Split],
    t: MambaTrainParams,
    seed: int,
    mamba_params: int,
    window: int,
    fingerprint: str,
) -> tuple[dict[str, Trained], float]:
    """Every comparator on the Mamba's windows (see ``baselines``); also returns the Keras
    recurrent comparator's seconds per training step."""
    import pickle

    from reprolab.guard.schedule import lr_multiplier
    from reprolab.models.mamba import torch_gru
    from reprolab.models.mamba.baselines import (
        build_recurrent_classifier,
        fit_boosted_trees,
        fit_logistic,
        majority_probability,
        persistence_probability,
        tabular_probability,
        units_matching,
    )

    tr = data["train"]
    out: dict[str, Trained] = {}
    for name, probability in (
        ("majority", lambda s: majority_probability(tr.y, len(s.y))),
        ("persistence", lambda s: persistence_probability(tr.last_up, tr.y, s.last_up)),
    ):
        probs = {split: probability(data[split]) for split in ("val", "test")}
        out[name] = Trained(probs, {"params": 1, "size_bytes": 8}, 0.0, 0.0)
    for name, fit in (("logistic", fit_logistic), ("boosted_trees", fit_boosted_trees)):
        start = time.perf_counter()
        model = fit(tr.x, tr.y, seed)
        seconds = time.perf_counter() - start
        probs, ms = _evaluate(lambda x, m=model: tabular_probability(m, x), data)
        info = {"size_bytes": len(pickle.dumps(model, protocol=5))}
        out[name] = Trained(probs, info, seconds, ms)

    kind = t.comparator
    units = units_matching(kind, tr.x.shape[2], mamba_params)
    build = lambda: build_recurrent_classifier(kind, tr.x.shape[2], window, units, seed)  # noqa: E731
    start = time.perf_counter()
    model, summary, step_s = fit_guarded(
        build, data, t, seed, kind, METRICS_DIR / "live" / "comparator", f"{fingerprint}|{kind}"
    )
    seconds = time.perf_counter() - start
    path = MODEL_DIR / "comparators" / f"{kind}.keras"
    save_keras_model(model, path)
    probs, ms = _evaluate(lambda x: predict_proba(model, x), data)
    info = {
        "params": int(model.count_params()),
        "units": units,
        "size_bytes": path.stat().st_size,
        "training": summary,
    }
    out[kind] = Trained(probs, info, seconds, ms)

    units = units_matching("gru", tr.x.shape[2], mamba_params)
    start = time.perf_counter()
    fit = torch_gru.train_torch_gru(
        tr.x,
        tr.y,
        data["val"].x,
        data["val"].y,
        units=units,
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        patience=t.patience,
        seed=seed,
        lr_factor=lambda epoch: lr_multiplier(epoch, t.epochs, t.schedule, 0, t.min_lr_ratio),
    )
    seconds = time.perf_counter() - start
    path = MODEL_DIR / "comparators" / "torch_gru.npz"
    torch_gru.save_torch_gru(fit.model, path)
    probs, ms = _evaluate(lambda x: torch_gru.predict_proba(fit.model, x), data)
    info = {
        "params": torch_gru.parameter_count(fit.model),
        "units": units,
        "size_bytes": path.stat().st_size,
        "training": {"best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run},
    }
    out["torch_gru"] = Trained(probs, info, seconds, ms)
    return out, step_s


def train(params: Params, res: StageResources) -> None:
    configure_tensorflow()
    t = params.train.mamba
    seed = int_seed(params.seed, "train", MODEL)
    budget = MemoryBudget(params.resources.memory_budget_mb)
    data, names, window = load_splits(budget)
    res.add_rows(sum(len(s.y) for s in data.values()))
    fingerprint = train_fingerprint(params, MODEL)
    if t.per_symbol:
        train_per_symbol(data, t, seed, window, len(names), fingerprint)
        return

    build = mamba_builder(t, len(names), window, seed)
    start = time.perf_counter()
    model, summary, mamba_step_s = fit_guarded(
        build, data, t, seed, MODEL, METRICS_DIR / "live" / MODEL, fingerprint
    )
    train_seconds = time.perf_counter() - start
    save_keras_model(model, MODEL_DIR / "model.keras")
    mamba_probs, mamba_ms = _evaluate(lambda x: predict_proba(model, x), data)
    _save_predictions(MODEL_DIR / "predictions.parquet", data["test"], mamba_probs["test"])

    start = time.perf_counter()
    others, comp_step_s = comparators(data, t, seed, model.count_params(), window, fingerprint)
    comparator_seconds = time.perf_counter() - start
    for name, trained in others.items():
        path = MODEL_DIR / "comparators" / f"{name}_predictions.parquet"
        _save_predictions(path, data["test"], trained.probs["test"])

    report: dict[str, Any] = {
        "model": {
            "params": int(model.count_params()),
            "size_bytes": (MODEL_DIR / "model.keras").stat().st_size,
            "training": summary,
            **_reports(seed, MODEL, data, mamba_probs, t.bootstrap),
        },
        "comparators": {
            name: {**c.info, **_reports(seed, name, data, c.probs, t.bootstrap)}
            for name, c in others.items()
        },
        "windows": {split: len(data[split].y) for split in SPLITS},
    }
    write_json(METRICS_DIR / "metrics.json", rounded(report))
    n_windows = len(data["train"].y) * summary["epochs_run"]
    costs = {
        MODEL: {"train_seconds": train_seconds, "inference_ms_per_1000": mamba_ms},
        **{
            name: {
                "train_seconds": c.train_seconds,
                "inference_ms_per_1000": c.inference_ms_per_1000,
            }
            for name, c in others.items()
        },
    }
    write_json(
        METRICS_DIR / "speed.json",
        rounded(
            {
                "train_seconds": train_seconds,
                "comparator_seconds": comparator_seconds,
                "train_windows_per_s": n_windows / train_seconds,
                "mamba_step_ms": 1000 * mamba_step_s,
                f"{t.comparator}_step_ms": 1000 * comp_step_s,
                f"mamba_over_{t.comparator}_step_ratio": mamba_step_s / comp_step_s,
                "batch_size": t.batch_size,
                "models": costs,
            }
        ),
    )


# --------------------------------------------------------------------------- per symbol
def _symbol_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Train one symbol's model in a pool process; write it atomically, register it locked."""
    configure_tensorflow(threads=1)
    t: MambaTrainParams = job["params"]
    symbol = job["symbol"]
    data: dict[str, Split] = job["data"]
    build = mamba_builder(t, data["train"].x.shape[2], job["window"], job["seed"])
    model, summary, _ = fit_guarded(
        build,
        data,
        t,
        job["seed"],
        f"per_symbol/{symbol}",
        None,
        f"{job['fingerprint']}|{symbol}",
        verbose=0,
    )
    path = Path(job["out_dir"]) / f"{symbol}.keras"
    save_keras_model(model, path)
    probs = {split: predict_proba(model, data[split].x) for split in ("val", "test")}
    entry = {
        "path": str(path),
        "params": int(model.count_params()),
        "best_epoch": summary["best_epoch"],
        "val_accuracy": float(np.mean((probs["val"] > 0.5) == data["val"].y)),
        "test_accuracy": float(np.mean((probs["test"] > 0.5) == data["test"].y)),
    }

    def add(registry: dict | None) -> dict:
        registry = dict(registry or {})
        registry[symbol] = entry
        return registry

    locked_update(Path(job["out_dir"]) / "registry.json", add, default={})
    return {"symbol": symbol, "test_probability": probs["test"], **entry}


def train_per_symbol(
    data: dict[str, Split],
    t: MambaTrainParams,
    seed: int,
    window: int,
    n_features: int,
    fingerprint: str,
    out_dir: Path = MODEL_DIR / "per_symbol",
) -> list[dict[str, Any]]:
    """One model per symbol in a process pool of ``t.jobs`` workers (spawned, one thread each)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    symbols = sorted(data["test"].windows["symbol"].unique())
    jobs = [
        {
            "symbol": s,
            "params": t,
            "window": window,
            "seed": int_seed(seed, "symbol", s),
            "fingerprint": fingerprint,
            "out_dir": str(out_dir),
            "data": {k: v.select((v.windows["symbol"] == s).to_numpy()) for k, v in data.items()},
        }
        for s in symbols
    ]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=t.jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_symbol_worker, jobs))
    seconds = time.perf_counter() - start
    test = data["test"]
    order = {r["symbol"]: r for r in results}
    p_test = np.empty(len(test.y))
    for s in symbols:
        mask = (test.windows["symbol"] == s).to_numpy()
        p_test[mask] = order[s]["test_probability"]
    _save_predictions(MODEL_DIR / "predictions.parquet", test, p_test)
    report = {
        "mode": "per_symbol",
        "symbols": {
            r["symbol"]: {
                k: r[k] for k in ("params", "best_epoch", "val_accuracy", "test_accuracy")
            }
            for r in results
        },
        "test": classification_report(test.y, p_test, t.bootstrap, rng(seed, MODEL, "per_symbol")),
    }
    write_json(METRICS_DIR / "metrics.json", rounded(report))
    with LiveLog(METRICS_DIR / "live" / "per_symbol") as live:
        for r in sorted(results, key=lambda r: r["symbol"]):
            live.step({"val/accuracy": r["val_accuracy"], "test/accuracy": r["test_accuracy"]})
    write_json(
        METRICS_DIR / "speed.json",
        {"train_seconds": round(seconds, 3), "symbols": len(symbols), "jobs": t.jobs},
    )
    return results
