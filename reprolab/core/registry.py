"""The one registry of what the pipeline is made of: its datasets, its models (each with the
dataset it trains on and the framework that trains it) and the sections of
metrics/validate.json. Every list in the code reads these; ``tests/stages/test_registry.py``
compares them with ``dvc.yaml``'s ``foreach`` lists and the resource deps of the closing
stages. Adding a dataset or a model starts here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Model:
    dataset: str  # the dataset whose features train@<model> reads
    framework: Literal["keras", "torch"]  # whose guard trains it (reprolab/guard/<framework>)


DATASETS: tuple[str, ...] = ("markets", "options", "contexts")
MODELS: dict[str, Model] = {
    "mamba": Model(dataset="markets", framework="keras"),
    "pinn": Model(dataset="options", framework="keras"),
    "cet": Model(dataset="contexts", framework="torch"),
}
# The steps every dataset goes through, in order, before its models train.
DATA_STEPS: tuple[str, ...] = ("generate", "split_augment", "features", "data_metrics")
# metrics/validate.json: the shared sections every model's promotion also needs, then one
# section per model, in this order.
SHARED_SECTIONS: tuple[str, ...] = ("data", "resources")
GATE_SECTIONS: tuple[str, ...] = (*SHARED_SECTIONS, *MODELS)


def dataset_of(model: str) -> str:
    """The dataset ``model`` trains on."""
    return MODELS[model].dataset
