"""The Mamba's ablation, scored on the validation split only (choose on validation).

Each configuration overrides ``train.mamba`` from ``params.yaml``, trains the forecaster on
the training split (early stopping on validation, as the stage does) and is scored on the
validation targets: expected accuracy under the filter oracle's probabilities minus the
oracle's own (no label noise), validation log loss and accuracy. The test split is never
read. Results go to ``metrics/ablation/mamba.json`` one configuration at a time (a rerun
skips the ones already there), and ``table`` prints the Markdown table that
``docs/models.md`` carries between its ``mamba-ablation`` markers (a test compares them).

    python -m reprolab.studies.mamba_ablation run      # needs data/features, data/truth
    python -m reprolab.studies.mamba_ablation table

Not a pipeline stage: no stage imports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from reprolab.core import paths
from reprolab.core.io import read_json, write_json

RESULTS = paths.METRICS / "ablation" / "mamba.json"
# (label, train.mamba overrides of params.yaml); the first row is the defaults themselves.
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("the defaults (params.yaml)", {}),
    ("no next-day forecasts: the labels alone (forecast_weight 0)", {"forecast_weight": 0.0}),
    ("forecast weight 3", {"forecast_weight": 3.0}),
    ("forecast the next return only", {"forecast_inputs": ["log_return"]}),
    ("one sigmoid unit as the head (experts 0)", {"experts": 0}),
    ("two Mamba layers", {"n_layers": 2}),
    ("every feature as input", {"inputs": []}),
    ("6 epochs of batch 128 (a thirteenth of the steps)", {"epochs": 6, "batch_size": 128}),
    ("chunks every 64 days (half the chunks)", {"chunk_stride": 64}),
]
START, END = "<!-- mamba-ablation:start -->", "<!-- mamba-ablation:end -->"


def score(label: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Train one configuration on train, score it on validation."""
    from reprolab.core.config import load_params
    from reprolab.core.resources import MemoryBudget
    from reprolab.core.tables import read_parquet
    from reprolab.models.mamba.data import load_market_splits
    from reprolab.models.mamba.fitting import FitContext, configure_tensorflow
    from reprolab.models.mamba.forecaster import MambaForecaster

    configure_tensorflow()
    params = load_params()
    t = dataclasses.replace(params.train.mamba, **overrides)
    data, _, _ = load_market_splits(MemoryBudget(params.resources.memory_budget_mb))
    val = data["val"]
    truth = read_parquet(paths.truth("markets"), columns=["symbol", "date", "oracle_p_up"])
    q = val.targets.merge(truth, on=["symbol", "date"], how="left")["oracle_p_up"].to_numpy()
    from reprolab.core.seeding import int_seed

    with tempfile.TemporaryDirectory() as tmp:
        ctx = FitContext(t, int_seed(params.seed, "train", "mamba"), Path(tmp), None, label, 0)
        model = MambaForecaster(ctx)
        start = time.perf_counter()
        model.fit(data["train"], val)
        seconds = time.perf_counter() - start
        shutil.rmtree(tmp, ignore_errors=True)
    p = np.clip(model.predict_proba(val), 1e-7, 1 - 1e-7)
    y = val.y
    expected = np.where(p > 0.5, q, 1 - q).mean() - np.maximum(q, 1 - q).mean()
    return {
        "label": label,
        "overrides": overrides,
        "val_expected_gap_pt": round(100 * float(expected), 3),
        "val_log_loss": round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 5),
        "val_accuracy": round(float(np.mean((p > 0.5) == y)), 4),
        "params": model.info["params"],
        "epochs_run": max(t["epochs_run"] for t in np.atleast_1d(model.info["training"])),
        "fit_seconds": round(seconds, 1),
    }


def run(path: Path = RESULTS) -> None:
    done = read_json(path) if path.exists() else {"rows": []}
    labels = {r["label"] for r in done["rows"]}
    for label, overrides in CONFIGS:
        if label in labels:
            continue
        done["rows"].append(score(label, overrides))
        write_json(path, done)
        print(json.dumps(done["rows"][-1]), file=sys.stderr)


def table(path: Path = RESULTS) -> str:
    """The Markdown table of the results, in ``CONFIGS`` order."""
    rows = {r["label"]: r for r in read_json(path)["rows"]}
    lines = [
        "| configuration (train.mamba) | val gap to the oracle (pt) | val log loss "
        "| val accuracy | parameters | epochs | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, _ in CONFIGS:
        if label in rows:
            r = rows[label]
            lines.append(
                f"| {label} | {r['val_expected_gap_pt']:+.3f} | {r['val_log_loss']:.5f} "
                f"| {r['val_accuracy']:.4f} | {r['params']:,} | {r['epochs_run']} "
                f"| {r['fit_seconds']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "table"])
    args = parser.parse_args(argv)
    if args.command == "run":
        run()
    else:
        print(table())


if __name__ == "__main__":
    main()
