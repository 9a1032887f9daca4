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


def input_columns(requested: list[str], available: list[str]) -> list[str]:
    """The feature columns the Mamba reads: ``train.mamba.inputs`` or every feature."""
    unknown = [c for c in requested if c not in available]
    if unknown:
        raise ValidationError(
            f"params.yaml: train.mamba.inputs: unknown feature(s) {unknown}; expected names "
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


def _inputs(split: MarketSplit, columns: list[str]) -> np.ndarray:
    index = [split.names.index(c) for c in columns]
    return split.scaled[:, index]


class MambaForecaster:
    name = NAME

    def __init__(self, ctx: FitContext) -> None:
        self.ctx = ctx
        self.model: Any = None
        self.members: list[Any] = []
        self.columns: list[str] = []
        self.info: dict[str, Any] = {}
        self.step_seconds = float("nan")

    def training_data(
        self, train: MarketSplit, val: MarketSplit
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x, y) training chunks and (x, y) whole validation series, labels at targets."""
        t = self.ctx.t
        labels = sq.target_labels(len(train.rows), train.target_rows, train.y)
        x, y = sq.training_chunks(
            _inputs(train, self.columns),
            train.target_series(),
            labels,
            t.sequence_length,
            t.chunk_stride,
            t.burn_in,
        )
        val_labels = sq.target_labels(len(val.rows), val.target_rows, val.y)
        xv, yv = sq.full_series(_inputs(val, self.columns), val.series, val_labels)
        return x, y, xv, yv

    def fit(self, train: MarketSplit, val: MarketSplit) -> None:
        """Train ``train.mamba.ensemble`` Mambas (member 0 from the context's seed, the rest
        from seeds derived from it) on the same chunks."""
        from reprolab.core.seeding import int_seed
        from reprolab.models.mamba.fitting import fit_guarded
        from reprolab.models.mamba.keras_metrics import sequence_compile_kwargs
        from reprolab.models.mamba.model import build_mamba_sequence

        t = self.ctx.t
        self.columns = input_columns(t.inputs, train.names)
        experts = expert_columns(t.expert_inputs, self.columns)
        x, y, xv, yv = self.training_data(train, val)
        n = len(self.columns)
        self.members, summaries, steps = [], [], []
        for i in range(t.ensemble):
            seed = self.ctx.seed if i == 0 else int_seed(self.ctx.seed, "member", i)
            model, summary, step = fit_guarded(
                lambda s=seed: build_mamba_sequence(n, t, seed=s, expert_index=experts),
                x,
                y,
                xv,
                yv,
                dataclasses.replace(self.ctx, seed=seed),
                self.name if i == 0 else f"{self.name}_member_{i}",
                compile_kwargs=sequence_compile_kwargs,
            )
            self.members.append(model)
            summaries.append(summary)
            steps.append(step)
        self.model = self.members[0]
        self.step_seconds = float(np.mean(steps))
        self.info = {
            "params": int(self.model.count_params()),
            "inputs": self.columns,
            "expert_inputs": list(t.expert_inputs),
            "members": t.ensemble,
            "training_chunks": len(x),
            "training_days_scored": int((y >= 0).sum()),
            "training": summaries[0] if t.ensemble == 1 else summaries,
        }

    def predict_series(self, split: MarketSplit) -> tuple[np.ndarray, np.ndarray]:
        """P(up) at every day of every series of ``split`` (padded layout; the members'
        mean) and the layout's (series, day) position of each target."""
        x, _ = sq.full_series(_inputs(split, self.columns), split.series)
        batch = max(1, min(len(x), 64))
        p = np.mean([m.predict(x, batch_size=batch, verbose=0)[..., 0] for m in self.members], 0)
        return p, np.stack(sq.positions(split.series, split.target_rows))

    def predict_proba(self, split: MarketSplit) -> np.ndarray:
        p, (which, day) = self.predict_series(split)
        return p[which, day].astype(np.float64)

    def save(self, directory: Path) -> None:
        """``model.keras`` (member 0), ``model_<i>.keras`` for the others, and
        ``inputs.json``: the columns read and the member files."""
        from reprolab.core.io import write_json
        from reprolab.core.keras_io import save_keras_model

        files = [MODEL_FILE] + [f"model_{i}.keras" for i in range(1, len(self.members))]
        for model, name in zip(self.members, files, strict=True):
            save_keras_model(model, directory / name)
        write_json(directory / INPUTS_FILE, {"inputs": self.columns, "members": files})
        self.info["size_bytes"] = sum((directory / f).stat().st_size for f in files)
