"""Models: the Mamba (and later the PINN and the CET) plus their comparators."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_keras_model(path: str | Path, compile: bool = True) -> Any:
    """Load a ``.keras`` model saved by the pipeline, with every custom class registered."""
    import keras

    from reprolab.models import keras_metrics, mamba, pinn  # noqa: F401  (registers classes)

    _ = pinn.PinnPricer  # created and registered on first access

    return keras.models.load_model(path, compile=compile)
