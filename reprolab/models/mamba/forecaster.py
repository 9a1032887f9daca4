"""The Mamba forecaster: reads each series whole and predicts every day, trained on chunks.

``fit`` cuts the training series (each up to its last training target) into chunks
(:mod:`reprolab.models.mamba.sequences`) whose loss falls on the training targets after the
burn-in, and stops early on the validation targets, each validation series read whole from
its first complete feature row; ``predict_proba`` reads every series of a split whole and
returns the prediction at each target. The same interface as the comparators.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from reprolab.core.errors import ValidationError
from reprolab.models.mamba import sequences as sq
from reprolab.models.mamba.data import MarketSplit
from reprolab.models.mamba.fitting import FitContext

NAME = "mamba"
MODEL_FILE = "model.keras"
INPUTS_FILE = "inputs.json"


def input_columns(
    requested: list[str], available: list[str], key: str = "train.mamba.inputs"
) -> list[str]:
    """The feature columns ``key`` names (the Mamba's inputs by default), or every feature
    when it names none."""
    unknown = [c for c in requested if c not in available]
    if unknown:
        raise ValidationError(
            f"params.yaml: {key}: unknown feature(s) {unknown}; expected names "
            f"from data/features/markets/registry.json: {', '.join(available)}"
        )
    return list(requested) if requested else list(available)


def expert_columns(requested: list[str], inputs: list[str]) -> list[int]:
    """Positions among the Mamba's inputs of what its head's experts read."""
    missing = [c for c in requested if c not in inputs]
    if missing:
        raise ValidationError(
            f"params.yaml: train.mamba.expert_inputs: {missing} not among the Mamba's inputs "
            f"(train.mamba.inputs): {', '.join(inputs)}"
        )
    return [inputs.index(c) for c in requested]


class MambaForecaster:
    name = NAME

    def __init__(self, ctx: FitContext) -> None:
        self.ctx = ctx
        self.model: Any = None
        self.members: list[Any] = []
        self.columns: list[str] = []
        self.forecast_columns: list[str] = []
        self.info: dict[str, Any] = {}
        self.step_seconds = float("nan")

    def training_data(
        self, train: MarketSplit, val: MarketSplit
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, y) training chunks and (x, y) whole validation series, labels at targets
        (with the next-day forecast targets when the Mamba is trained to forecast)."""
        t = self.ctx.t
        return sq.fit_arrays(
            train,
            val,
            self.columns,
            t.sequence_length,
            t.chunk_stride,
            t.burn_in,
            self.forecast_columns,
        )

    def fit(self, train: MarketSplit, val: MarketSplit) -> None:
        """Train ``train.mamba.ensemble`` Mambas (member 0 from the context's seed, the rest
        from seeds derived from it) on the same chunks."""
        from reprolab.core.seeding import int_seed
        from reprolab.models.mamba import keras_metrics as km
        from reprolab.models.mamba.fitting import fit_guarded
        from reprolab.models.mamba.model import (
            build_mamba_forecasting,
            build_mamba_sequence,
            inference_model,
        )

        t = self.ctx.t
        self.columns = input_columns(t.inputs, train.names)
        experts = expert_columns(t.expert_inputs, self.columns)
        forecast = t.forecast_inputs if t.forecast_weight > 0 else []
        self.forecast_columns = (
            input_columns(forecast, train.names, "train.mamba.forecast_inputs") if forecast else []
        )
        x, y, xv, yv = self.training_data(train, val)
        n, k = len(self.columns), len(self.forecast_columns)
        compile_kwargs = (
            km.forecasting_compile_kwargs(t.forecast_weight) if k else km.sequence_compile_kwargs
        )

        def build(seed: int) -> Any:
            if k:
                return build_mamba_forecasting(n, t, k, seed=seed, expert_index=experts)
            return build_mamba_sequence(n, t, seed=seed, expert_index=experts)

        self.members, summaries, steps = [], [], []
        for i in range(t.ensemble):
            seed = self.ctx.seed if i == 0 else int_seed(self.ctx.seed, "member", i)
            model, summary, step = fit_guarded(
                lambda s=seed: build(s),
                x,
                y,
                xv,
                yv,
                dataclasses.replace(self.ctx, seed=seed),
                self.name if i == 0 else f"{self.name}_member_{i}",
                compile_kwargs=compile_kwargs,
            )
            self.members.append(inference_model(model))
            summaries.append(summary)
            steps.append(step)
        self.model = self.members[0]
        self.step_seconds = float(np.mean(steps))
        self.info = {
            "params": int(self.model.count_params()),
            "inputs": self.columns,
            "expert_inputs": list(t.expert_inputs),
            "forecast_inputs": self.forecast_columns,
            "forecast_weight": t.forecast_weight if self.forecast_columns else 0.0,
            "members": t.ensemble,
            "training_chunks": len(x),
            "training_days_scored": int((sq.labels_of(y) >= 0).sum()),
            "training": summaries[0] if t.ensemble == 1 else summaries,
        }

    def predict_series(self, x: np.ndarray) -> np.ndarray:
        """P(up) at every day of whole series ``x`` (n, longest, inputs): the members' mean."""
        batch = max(1, min(len(x), 64))
        return np.mean([m.predict(x, batch_size=batch, verbose=0)[..., 0] for m in self.members], 0)

    def predict_proba(self, split: MarketSplit) -> np.ndarray:
        return sq.at_targets(self.predict_series, split, self.columns)

    def save(self, directory: Path) -> None:
        """``model.keras`` (member 0), ``model_<i>.keras`` for the others, and
        ``inputs.json``: the columns read and the member files."""
        from reprolab.core.io import write_json
        from reprolab.guard.keras.saving import save_keras_model

        files = [MODEL_FILE] + [f"model_{i}.keras" for i in range(1, len(self.members))]
        for model, name in zip(self.members, files, strict=True):
            save_keras_model(model, directory / name)
        write_json(directory / INPUTS_FILE, {"inputs": self.columns, "members": files})
        self.info["size_bytes"] = sum((directory / f).stat().st_size for f in files)
