"""Guarded Keras training shared by the Mamba and the Keras comparators (train@mamba and
walk_forward): one call, one checkpoint directory, one dvclive log."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reprolab.core.config import MambaTrainParams
from reprolab.guard.common.live import LiveLog


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet TensorFlow's C++ logs; optionally pin thread pools (one per pool worker)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if threads is not None:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


@dataclass(frozen=True)
class FitContext:
    """Where and under which identity a model trains: its checkpoints survive DVC's deletion
    of outputs; ``fingerprint`` names everything that decides the result."""

    t: MambaTrainParams
    seed: int
    checkpoints: Path  # the stage's checkpoint root
    live: Path | None  # the stage's dvclive root (None: no log)
    fingerprint: str
    verbose: int | None = None

    def named(self, name: str, log: str | None = None) -> tuple[Path, Path | None, str]:
        """Checkpoint directory, dvclive directory (``log``, default ``name``), fingerprint."""
        live = None if self.live is None else self.live / (log or name)
        return self.checkpoints / name, live, f"{self.fingerprint}|{name}"


def fit_guarded(
    build: Callable,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    ctx: FitContext,
    name: str,
    compile_kwargs: Callable[[float], dict] | None = None,
    log: str | None = None,
) -> tuple[Any, dict[str, Any], float]:
    """Train under the guard; returns (model, training summary, seconds per step)."""
    from reprolab.guard.common.schedule import lr_multiplier
    from reprolab.guard.keras.fit import keras_names, train_guarded
    from reprolab.models.mamba.keras_metrics import direction_compile_kwargs

    t = ctx.t
    checkpoint_dir, live_dir, fingerprint = ctx.named(name, log)
    live = LiveLog(live_dir) if live_dir is not None else None
    log = (lambda epoch, logs: live.step(keras_names(logs))) if live is not None else None
    verbose = ctx.verbose
    if verbose is None:  # a bar per batch on a terminal, a line per epoch in logs and CI
        verbose = 1 if sys.stderr.isatty() else 2
    start = time.perf_counter()
    result = train_guarded(
        build,
        x_train,
        y_train,
        x_val,
        y_val,
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        patience=t.patience,
        seed=ctx.seed,
        checkpoint_dir=checkpoint_dir,
        guard=t.guard,
        compile_kwargs=compile_kwargs or direction_compile_kwargs,
        on_epoch_end=log,
        fingerprint=fingerprint,
        verbose=verbose,
        lr_multiplier=lambda epoch: lr_multiplier(epoch, t.epochs, t.schedule, 0, t.min_lr_ratio),
    )
    seconds = time.perf_counter() - start
    if live is not None:
        live.end()
    epochs_run = len(result.history)
    steps = epochs_run * -(-len(y_train) // result.batch_size)
    summary = {
        "best_epoch": int(result.best_epoch),
        "epochs_run": epochs_run,
        "batch_size": int(result.batch_size),
        "learning_rate": float(result.learning_rate),
        "events": list(result.events),
    }
    return result.model, summary, seconds / max(steps, 1)


def predict_proba(model: Any, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """A Keras classifier's P(up) per row of ``x``, float64."""
    return model.predict(x, batch_size=batch_size, verbose=0).reshape(-1).astype(np.float64)
