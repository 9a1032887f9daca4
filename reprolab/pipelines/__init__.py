"""Orchestration of each step for each dataset: read inputs, call the library, write outputs.

``reprolab.pipelines.<dataset>`` exposes one function per step (``generate``,
``split_augment``, ``features``, ``data_metrics``) with the signature
``(params, resources) -> None``; the stage entry points in ``stages/`` dispatch to them.
"""

from __future__ import annotations

import importlib

from reprolab.config import Params
from reprolab.resources import StageResources
from reprolab.stage import StageMain

DATASETS = ("markets", "options", "contexts")
MODELS = ("mamba", "pinn", "cet")
STEPS = ("generate", "split_augment", "features", "data_metrics")


def run_step(step: str, dataset: str, params: Params, res: StageResources) -> None:
    module = importlib.import_module(f"reprolab.pipelines.{dataset}")
    getattr(module, step)(params, res)


def step_main(step: str) -> StageMain:
    """The stage function for ``step``: dispatches ``item`` to its dataset's pipeline."""

    def main(item: str, params: Params, res: StageResources) -> None:
        run_step(step, item, params, res)

    return main
