"""train@mamba: the Mamba forecaster and every comparator of the registry, on exactly the
same targets, with their metrics. Never reads data/truth.

The Mamba reads each series whole (:mod:`reprolab.models.mamba.forecaster`); each comparator
(:mod:`reprolab.models.mamba.comparators`) reads the inputs that serve it. Everything is
fitted on the training split and chooses (early stopping, inputs, settings) on the
validation split; the test split is only predicted, once, by the final models.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from reprolab.core import paths
from reprolab.core.config import MambaTrainParams, Params
from reprolab.core.io import locked_update, rounded, write_json
from reprolab.core.resources import MemoryBudget, StageResources
from reprolab.core.seeding import int_seed, rng
from reprolab.core.tables import write_parquet
from reprolab.guard.common.checkpoint import train_fingerprint
from reprolab.guard.common.live import LiveLog
from reprolab.models.mamba.comparators import COMPARATORS
from reprolab.models.mamba.data import MarketSplit, load_market_splits
from reprolab.models.mamba.fitting import FitContext, configure_tensorflow
from reprolab.models.mamba.forecaster import MambaForecaster
from reprolab.models.mamba.report import classification_report

MODEL = "mamba"
DATASET = "markets"
SPLITS = ("train", "val", "test")
MODEL_DIR = paths.model_dir(MODEL)
METRICS_DIR = paths.train_metrics(MODEL)
# Outside every DVC output: DVC deletes outputs before a stage runs, checkpoints must survive.
CHECKPOINTS = paths.checkpoints(MODEL)


def save_predictions(path: Path, split: MarketSplit, p_up: np.ndarray) -> None:
    """(symbol, date, probability) per target of ``split``."""
    frame = split.targets[["symbol", "date"]].reset_index(drop=True).copy()
    frame["probability"] = p_up
    write_parquet(path, frame)


@dataclass
class Trained:
    """One model's evidence: probabilities, what decides them, and its costs."""

    probs: dict[str, np.ndarray]  # "val", "test" -> P(up) per target
    info: dict[str, Any]  # deterministic: parameters, inputs chosen, training summary
    train_seconds: float
    inference_ms_per_1000: float  # test-split prediction time per 1,000 targets


def fit_and_predict(model: Any, data: dict[str, MarketSplit], directory: Path) -> Trained:
    """Fit on train (choosing on val), save to ``directory``, predict val, then test once."""
    start = time.perf_counter()
    model.fit(data["train"], data["val"])
    seconds = time.perf_counter() - start
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory)
    probs = {"val": model.predict_proba(data["val"])}
    start = time.perf_counter()
    probs["test"] = model.predict_proba(data["test"])
    ms = 1000 * (time.perf_counter() - start) / max(len(data["test"]), 1) * 1000
    return Trained(probs, dict(model.info), seconds, ms)


def reports(
    seed: int, name: str, data: dict[str, MarketSplit], probs: dict[str, np.ndarray], n: int
) -> dict[str, Any]:
    return {
        split: classification_report(data[split].y, probs[split], n, rng(seed, MODEL, name, split))
        for split in ("val", "test")
    }


def best_on_validation(report: dict[str, Any]) -> str:
    """The comparator with the lowest validation log loss in a train@mamba metrics report
    (ties: the first by name): the one ``walk_forward`` runs beside the Mamba."""
    scores = {name: c["val"]["log_loss"] for name, c in report["comparators"].items()}
    return min(sorted(scores), key=lambda name: scores[name])


def train(params: Params, res: StageResources) -> None:
    configure_tensorflow()
    t = params.train.mamba
    seed = int_seed(params.seed, "train", MODEL)
    data, _, _ = load_market_splits(MemoryBudget(params.resources.memory_budget_mb))
    res.add_rows(sum(len(s) for s in data.values()))
    fingerprint = train_fingerprint(params, MODEL)
    ctx = FitContext(t, seed, CHECKPOINTS, METRICS_DIR / "live", fingerprint)
    if t.per_symbol:
        train_per_symbol(data, ctx)
        return

    mamba = MambaForecaster(ctx)
    trained = {MODEL: fit_and_predict(mamba, data, MODEL_DIR)}
    save_predictions(MODEL_DIR / "predictions.parquet", data["test"], trained[MODEL].probs["test"])
    step_seconds = {MODEL: mamba.step_seconds}
    comparator_dir = MODEL_DIR / "comparators"
    comparator_ctx = FitContext(t, seed, CHECKPOINTS, METRICS_DIR / "live", fingerprint)
    for key, factory in COMPARATORS.items():
        model = factory(comparator_ctx, mamba.info["params"])
        trained[model.name] = fit_and_predict(model, data, comparator_dir)
        save_predictions(
            comparator_dir / f"{model.name}_predictions.parquet",
            data["test"],
            trained[model.name].probs["test"],
        )
        if key == "recurrent":
            step_seconds[model.name] = model.step_seconds

    def entry(name: str) -> dict[str, Any]:
        return {**trained[name].info, **reports(seed, name, data, trained[name].probs, t.bootstrap)}

    report: dict[str, Any] = {
        "model": entry(MODEL),
        "comparators": {name: entry(name) for name in trained if name != MODEL},
        "windows": {split: len(data[split]) for split in SPLITS},
    }
    report["best_comparator_on_validation"] = best_on_validation(report)
    write_json(METRICS_DIR / "metrics.json", rounded(report))
    write_speed(t, trained, step_seconds, len(data["train"]))


def write_speed(
    t: MambaTrainParams, trained: dict[str, Trained], step_seconds: dict[str, float], n: int
) -> None:
    """Timings (cache: false): every model's training seconds and inference ms per 1,000."""
    mamba_s, comp_s = step_seconds[MODEL], step_seconds.get(t.comparator, float("nan"))
    epochs = trained[MODEL].info["training"]["epochs_run"]
    write_json(
        METRICS_DIR / "speed.json",
        rounded(
            {
                "train_seconds": trained[MODEL].train_seconds,
                "comparator_seconds": sum(
                    v.train_seconds for k, v in trained.items() if k != MODEL
                ),
                "train_windows_per_s": n * epochs / trained[MODEL].train_seconds,
                "mamba_step_ms": 1000 * mamba_s,
                f"{t.comparator}_step_ms": 1000 * comp_s,
                f"mamba_over_{t.comparator}_step_ratio": mamba_s / comp_s,
                "batch_size": t.batch_size,
                "models": {
                    name: {
                        "train_seconds": v.train_seconds,
                        "inference_ms_per_1000": v.inference_ms_per_1000,
                    }
                    for name, v in trained.items()
                },
            }
        ),
    )


# --------------------------------------------------------------------------- per symbol
def _symbol_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Train one symbol's Mamba in a pool process; write it atomically, register it locked."""
    configure_tensorflow(threads=1)
    symbol = job["symbol"]
    data: dict[str, MarketSplit] = job["data"]
    ctx: FitContext = job["ctx"]
    model = MambaForecaster(ctx)
    model.name = f"per_symbol/{symbol}"
    model.fit(data["train"], data["val"])
    out = Path(job["out_dir"]) / symbol
    out.mkdir(parents=True, exist_ok=True)
    model.save(out)
    probs = {split: model.predict_proba(data[split]) for split in ("val", "test")}
    entry = {
        "path": str(out / "model.keras"),
        "params": model.info["params"],
        "best_epoch": model.info["training"]["best_epoch"],
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
    data: dict[str, MarketSplit], ctx: FitContext, out_dir: Path = MODEL_DIR / "per_symbol"
) -> list[dict[str, Any]]:
    """One Mamba per symbol in a process pool of ``train.mamba.jobs`` workers (spawned, one
    thread each), each on its own symbol's series."""
    t = ctx.t
    out_dir.mkdir(parents=True, exist_ok=True)
    symbols = sorted(data["test"].targets["symbol"].unique())
    quiet = FitContext(t, ctx.seed, ctx.checkpoints, None, ctx.fingerprint, verbose=0)
    jobs = [
        {
            "symbol": s,
            "ctx": FitContext(
                t, int_seed(ctx.seed, "symbol", s), quiet.checkpoints, None, ctx.fingerprint, 0
            ),
            "out_dir": str(out_dir),
            "data": {k: v.for_symbol(s) for k, v in data.items()},
        }
        for s in symbols
    ]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=t.jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_symbol_worker, jobs))
    seconds = time.perf_counter() - start
    test = data["test"]
    order = {r["symbol"]: r for r in results}
    p_test = np.empty(len(test))
    for s in symbols:
        mask = (test.targets["symbol"] == s).to_numpy()
        p_test[mask] = order[s]["test_probability"]
    save_predictions(MODEL_DIR / "predictions.parquet", test, p_test)
    report = {
        "mode": "per_symbol",
        "symbols": {
            r["symbol"]: {
                k: r[k] for k in ("params", "best_epoch", "val_accuracy", "test_accuracy")
            }
            for r in results
        },
        "test": classification_report(
            test.y, p_test, t.bootstrap, rng(ctx.seed, MODEL, "per_symbol")
        ),
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
