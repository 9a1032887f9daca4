"""Accuracy of the options PINN against the closed form, per maturity bucket and held-out band.

``python -m reprolab.studies.pinn_accuracy [--out REPORT.json]``: trains
with the default :class:`reprolab.models.pinn.model.PinnTrainParams` on the train split of
``data/features/options`` (validation on the val split, collocation points from its
``collocation`` folder), then scores the test split: all of it, the in-domain part, the
held-out band (``region == "heldout"``) and each maturity bucket. ``--export`` also writes the
serving weights (.npz) so the numbers can be reproduced without retraining.

The metrics are those of :mod:`reprolab.models.pinn.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reprolab.core.errors import PipelineError
from reprolab.core.io import write_json
from reprolab.core.tables import read_parquet
from reprolab.models.pinn.evaluate import evaluate

DATA = Path("data/features/options")


def _read(split: str) -> pd.DataFrame:
    """A split of the options features, its parts checked against their manifest."""
    return read_parquet(DATA / split)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprolab.studies.pinn_accuracy")
    parser.add_argument("--out", required=True, help="the report JSON")
    parser.add_argument("--export", default=None, help="also write the serving weights here")
    parser.add_argument("--params", default="{}", help="JSON overrides of PinnTrainParams")
    parser.add_argument("--checkpoint-dir", default="/tmp/reprolab_pinn_bench")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import dataclasses

    from reprolab.core.config import load_params
    from reprolab.models.pinn.model import export_weights
    from reprolab.models.pinn.train import train_pinn

    overrides = json.loads(args.params)
    for k, v in overrides.items():
        if isinstance(v, list):
            overrides[k] = tuple(v)
    repo = load_params()
    params = dataclasses.replace(repo.train.pinn, **overrides)
    seed = repo.seed
    try:
        train, val, test = _read("train"), _read("val"), _read("test")
        collocation = {
            k: read_parquet(DATA / "collocation" / f"{k}.parquet")
            for k in ("interior", "terminal", "boundary")
        }
    except PipelineError as exc:  # missing or damaged data: one line, as a stage says it
        print(f"error: pinn_accuracy: {exc.kind}: {exc}", file=sys.stderr)
        return exc.exit_code
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
