"""train@pinn: train the physics-informed option pricer, export it and score the export."""

from __future__ import annotations

import time

from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.io import rounded, write_json
from reprolab.core.resources import StageResources
from reprolab.core.seeding import int_seed
from reprolab.core.tables import read_parquet
from reprolab.datasets.options.generate import domain_bounds
from reprolab.guard.common.checkpoint import train_fingerprint
from reprolab.guard.common.live import LiveLog
from reprolab.guard.keras.fit import keras_names
from reprolab.guard.keras.saving import save_keras_model
from reprolab.models.pinn.evaluate import evaluate, parity_error
from reprolab.models.pinn.train import (
    CHECKPOINTS,
    DATASET,
    METRICS_DIR,
    MODEL,
    MODEL_DIR,
    train_pinn,
    trained_domain,
)


def train(params: Params, res: StageResources) -> None:
    from reprolab.datasets.options.features import training_domain_sampler
    from reprolab.models.pinn.model import export_weights
    from reprolab.models.pinn.numpy_model import NumpyPinn

    t = params.train.pinn
    feats = paths.features(DATASET)
    splits = {name: read_parquet(feats / name) for name in ("train", "val", "test")}
    collocation = {
        name: read_parquet(feats / "collocation" / f"{name}.parquet")
        for name in ("interior", "terminal", "boundary")
    }
    res.add_rows(sum(len(f) for f in splits.values()))
    live = LiveLog(METRICS_DIR / "live")

    def log(phase: str, epoch: int, logs: dict[str, float]) -> None:
        live.step(keras_names(logs))

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
    report = {
        **accuracy,
        "put_call_parity_max_abs_k": parity_error(served, splits["test"]),
        "artifact_bytes": weights.stat().st_size,
        "events": list(result.events),
    }
    write_json(METRICS_DIR / "metrics.json", rounded(report))
    write_json(
        METRICS_DIR / "speed.json",
        {
            "train_seconds": round(seconds, 3),
            "phase_seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        },
    )
