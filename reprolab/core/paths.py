"""Where each stage reads and writes (relative to the repository root, as in dvc.yaml)."""

from __future__ import annotations

from pathlib import Path

from reprolab.core.registry import MODELS as MODELS_OF_REGISTRY

DATA = Path("data")
METRICS = Path("metrics")
MODELS = Path("models")
# Training checkpoints survive interruptions; never a DVC output (git-ignored).
CHECKPOINTS = Path(".checkpoints")
RESOURCES = METRICS / "resources"
BENCHMARK = METRICS / "benchmark.json"  # every speed and memory figure, with its ratios
VALIDATE = METRICS / "validate.json"  # every goal of the trained models, judged
PLOTS = METRICS / "plots"  # charts the validate stage draws (tables for dvc plots, PNGs)
SPLITS = ("train", "val", "test")


def raw(dataset: str) -> Path:
    return DATA / "raw" / dataset


def truth(dataset: str) -> Path:
    """Judge-only ground truth: no training stage may depend on it."""
    return DATA / "truth" / dataset


def split(dataset: str) -> Path:
    return DATA / "split" / dataset


def features(dataset: str) -> Path:
    return DATA / "features" / dataset


def data_metrics(dataset: str) -> Path:
    return METRICS / "data" / f"{dataset}.json"


# The dataset each model trains on (its features are the stage's only data input).
DATASET_OF = {name: model.dataset for name, model in MODELS_OF_REGISTRY.items()}


def model_dir(model: str) -> Path:
    return MODELS / model


def train_metrics(model: str) -> Path:
    """``metrics.json``, ``speed.json`` and ``live/`` (dvclive) of ``train@<model>``."""
    return METRICS / "train" / model


def checkpoints(model: str) -> Path:
    return CHECKPOINTS / f"train_{model}"
