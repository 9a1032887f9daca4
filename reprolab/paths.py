"""Where each stage reads and writes (relative to the repository root, as in dvc.yaml)."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
METRICS = Path("metrics")


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
