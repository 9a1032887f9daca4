"""Every rival of the Mamba behind one interface, fitted and judged on the same targets.

A comparator is built from a :class:`~reprolab.models.mamba.fitting.FitContext` and has
``fit(train, val)`` (``val`` only chooses: early stopping, inputs, settings) and
``predict_proba(split)`` (P(next return up) per target of ``split``, in target order), as
qlib's models do; ``save(directory)`` writes what it learned, ``info`` says what it chose.
Adding a comparator is one class and one line in :data:`COMPARATORS`; ``train@mamba`` and
``walk_forward`` loop over the registry.

Each comparator gets the inputs that serve it, chosen on the validation split by log loss
(the labels, never the judge-only oracle): the tabular models choose between the target
day's features and a window summary; the regime filter reads each whole series.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sklearn.metrics import log_loss

from reprolab.core.io import write_json
from reprolab.models.mamba import sequences as sq
from reprolab.models.mamba.data import MarketSplit
from reprolab.models.mamba.fitting import FitContext
from reprolab.models.mamba.forecaster import input_columns


class Comparator(Protocol):
    name: str
    info: dict[str, Any]  # deterministic: what it chose, its size, its training summary

    def fit(self, train: MarketSplit, val: MarketSplit) -> None: ...

    def predict_proba(self, split: MarketSplit) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...


def validation_log_loss(split: MarketSplit, p_up: np.ndarray) -> float:
    """The selection score: log loss of P(up) on the split's labels (lower is better)."""
    return float(log_loss(split.y, np.clip(p_up, 1e-7, 1 - 1e-7), labels=[0, 1]))


# --------------------------------------------------------------------------- constant rules
class Majority:
    """The training up-share as a constant probability."""

    name = "majority"

    def __init__(self, ctx: FitContext) -> None:
        self.p = 0.5
        self.info: dict[str, Any] = {"params": 1, "inputs": "none"}

    def fit(self, train: MarketSplit, val: MarketSplit) -> None:
        self.p = float(np.mean(train.y))

    def predict_proba(self, split: MarketSplit) -> np.ndarray:
        return np.full(len(split), self.p)

    def save(self, directory: Path) -> None:
        write_json(directory / f"{self.name}.json", {"p_up": self.p})
        self.info["size_bytes"] = (directory / f"{self.name}.json").stat().st_size


class Persistence:
    """Tomorrow moves like today; its probability is the rule's training accuracy, so log
    loss and Brier stay finite and honest."""

    name = "persistence"

    def __init__(self, ctx: FitContext) -> None:
        self.hit = 0.5
        self.info: dict[str, Any] = {"params": 1, "inputs": "the target day's return sign"}

    def fit(self, train: MarketSplit, val: MarketSplit) -> None:
        self.hit = float(np.mean(train.last_up == train.y.astype(bool)))

    def predict_proba(self, split: MarketSplit) -> np.ndarray:
        return np.where(split.last_up, self.hit, 1.0 - self.hit)

    def save(self, directory: Path) -> None:
        write_json(directory / f"{self.name}.json", {"hit_rate": self.hit})
        self.info["size_bytes"] = (directory / f"{self.name}.json").stat().st_size


# --------------------------------------------------------------------------- tabular models
def window_summary(x: np.ndarray) -> np.ndarray:
    """Tabular features of each window (n, window, f) -> (n, 3 f): the last step, the mean
    of the last 5 steps and the mean of the whole window. Nothing after the window's end."""
    return np.concatenate([x[:, -1, :], x[:, -5:, :].mean(axis=1), x.mean(axis=1)], axis=1)


# The input views a tabular comparator chooses between on validation.
TABULAR_INPUTS: dict[str, Callable[[MarketSplit], np.ndarray]] = {
    "target_day": lambda s: s.last_day,
    "window_summary": lambda s: window_summary(s.x),
}


class _Tabular:
    """A scikit-learn classifier fitted on the training targets for every input view and
    setting in turn; the one with the lowest validation log loss is kept."""

    name = ""

    def __init__(self, ctx: FitContext) -> None:
        self.seed = ctx.seed % (2**32)
        self.model: Any = None
        self.inputs = ""
        self.info: dict[str, Any] = {}

    def settings(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def build(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def fit(self, train: MarketSplit, val: MarketSplit) -> None:
        scores: dict[str, float] = {}
        best = None
        for view, inputs in TABULAR_INPUTS.items():
            x_train, x_val = inputs(train), inputs(val)
            for label, kwargs in self.settings().items():
                model = self.build(**kwargs).fit(x_train, train.y)
                key = f"{view}/{label}"
                scores[key] = validation_log_loss(val, model.predict_proba(x_val)[:, 1])
                if best is None or scores[key] < scores[best[0]]:
                    best = (key, view, model)
        assert best is not None
        key, self.inputs, self.model = best
        self.info = {
            "inputs": self.inputs,
            "chosen": key,
            "validation_log_loss": scores,
            "size_bytes": len(pickle.dumps(self.model, protocol=5)),
        }

    def predict_proba(self, split: MarketSplit) -> np.ndarray:
        x = TABULAR_INPUTS[self.inputs](split)
        return self.model.predict_proba(x)[:, 1].astype(np.float64)

    def save(self, directory: Path) -> None:
        from reprolab.core.io import atomic_path

        with atomic_path(directory / f"{self.name}.pkl") as tmp, open(tmp, "wb") as fh:
            pickle.dump(self.model, fh, protocol=5)


class Logistic(_Tabular):
    name = "logistic"

    def settings(self) -> dict[str, dict[str, Any]]:
        return {"C=1": {"C": 1.0}}

    def build(self, **kwargs: Any) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=2000, random_state=self.seed, **kwargs)


class BoostedTrees(_Tabular):
    """Histogram gradient-boosted trees, a fixed number of rounds (no internal split, so no
    training row is held back and nothing is random but the seeded binning)."""

    name = "boosted_trees"

    def settings(self) -> dict[str, dict[str, Any]]:
        return {
            "lr=0.05,leaves=15": {"learning_rate": 0.05, "max_leaf_nodes": 15},
            "lr=0.05,leaves=31": {"learning_rate": 0.05, "max_leaf_nodes": 31},
        }

    def build(self, **kwargs: Any) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=300, early_stopping=False, random_state=self.seed, **kwargs
        )


# --------------------------------------------------------------------------- recurrent nets
class KerasRecurrent:
    """A Keras GRU or LSTM (``train.mamba.comparator``) that reads each whole series like
    the Mamba: the same inputs, training chunks, burn-in, guard and schedule, sized to the
    Mamba's parameter count."""

    def __init__(self, ctx: FitContext, mamba_params: int) -> None:
        self.ctx = ctx
        self.name = ctx.t.comparator
        self.mamba_params = mamba_params
        self.model: Any = None
        self.columns: list[str] = []
        self.info: dict[str, Any] = {}
        self.step_seconds = float("nan")

    def fit(self, train: MarketSplit, val: MarketSplit) -> None:
        from reprolab.models.mamba.baselines import build_recurrent_sequence, units_matching
        from reprolab.models.mamba.fitting import fit_guarded
        from reprolab.models.mamba.keras_metrics import sequence_compile_kwargs

        t = self.ctx.t
        self.columns = input_columns(t.inputs, train.names)  # the Mamba's inputs
        x, y, xv, yv = sq.fit_arrays(
            train, val, self.columns, t.sequence_length, t.chunk_stride, t.burn_in
        )
        units = units_matching(self.name, len(self.columns), self.mamba_params)
        seed = self.ctx.seed

        def build() -> Any:
            return build_recurrent_sequence(self.name, len(self.columns), units, seed)

        self.model, summary, self.step_seconds = fit_guarded(
            build,
            x,
            y,
            xv,
            yv,
            self.ctx,
            self.name,
            compile_kwargs=sequence_compile_kwargs,
            log="comparator",
        )
        self.info = {
            "params": int(self.model.count_params()),
            "units": units,
            "inputs": "each whole series: " + ", ".join(self.columns),
            "training": summary,
        }

    def predict_proba(self, split: MarketSplit) -> np.ndarray:
        def predict(x: np.ndarray) -> np.ndarray:
            return self.model.predict(x, batch_size=max(1, min(len(x), 64)), verbose=0)[..., 0]

        return sq.at_targets(predict, split, self.columns)

    def save(self, directory: Path) -> None:
        from reprolab.guard.keras.saving import save_keras_model

        path = directory / f"{self.name}.keras"
        save_keras_model(self.model, path)
        self.info["size_bytes"] = path.stat().st_size


class TorchGru:
    """A PyTorch GRU of the Mamba's parameter count that reads each whole series like the
    Mamba: the same inputs, chunks and schedule (``torch_gru``)."""

    name = "torch_gru"

    def __init__(self, ctx: FitContext, mamba_params: int) -> None:
        self.ctx = ctx
        self.mamba_params = mamba_params
        self.model: Any = None
        self.columns: list[str] = []
        self.info: dict[str, Any] = {}

    def fit(self, train: MarketSplit, val: MarketSplit) -> None:
        from reprolab.guard.common.schedule import lr_multiplier
        from reprolab.models.mamba import torch_gru
        from reprolab.models.mamba.baselines import units_matching

        t = self.ctx.t
        self.columns = input_columns(t.inputs, train.names)  # the Mamba's inputs
        x, y, xv, yv = sq.fit_arrays(
            train, val, self.columns, t.sequence_length, t.chunk_stride, t.burn_in
        )
        units = units_matching("gru", len(self.columns), self.mamba_params)
        fit = torch_gru.train_torch_gru(
            x,
            y,
            xv,
            yv,
            units=units,
            epochs=t.epochs,
            batch_size=t.batch_size,
            learning_rate=t.learning_rate,
            patience=t.patience,
            seed=self.ctx.seed,
            lr_factor=lambda epoch: lr_multiplier(epoch, t.epochs, t.schedule, 0, t.min_lr_ratio),
        )
        self.model = fit.model
        self.info = {
            "params": torch_gru.parameter_count(fit.model),
            "units": units,
            "inputs": "each whole series: " + ", ".join(self.columns),
            "training": {"best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run},
        }

    def predict_proba(self, split: MarketSplit) -> np.ndarray:
        from reprolab.models.mamba import torch_gru

        return sq.at_targets(lambda x: torch_gru.predict_proba(self.model, x), split, self.columns)

    def save(self, directory: Path) -> None:
        from reprolab.models.mamba import torch_gru

        path = directory / "torch_gru.npz"
        torch_gru.save_torch_gru(self.model, path)
        self.info["size_bytes"] = path.stat().st_size


# --------------------------------------------------------------------------- regime filter
def _ohlcv(split: MarketSplit, lo: int, hi: int) -> list[np.ndarray]:
    rows = split.rows
    return [rows[c].to_numpy(dtype=np.float64)[lo:hi] for c in OHLCV_COLUMNS]


OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")


class Hmm:
    """A Gaussian hidden Markov model fitted by EM on the training series (each read from
    its first day to its last training target), the state count by BIC; at a target, the
    causal forward filter over the whole series so far and the fitted emissions give
    P(next return up) (:mod:`reprolab.models.mamba.hmm`)."""

    name = "hmm"

    def __init__(self, ctx: FitContext) -> None:
        self.ctx = ctx
        self.params: Any = None
        self.info: dict[str, Any] = {}

    def fit(self, train: MarketSplit, val: MarketSplit) -> None:
        """EM for every candidate state count; the count with the lowest validation log
        loss of P(up) is kept (BIC, reported beside it, over-splits the momentum regime)."""
        from reprolab.models.mamba import hmm

        h = self.ctx.t.hmm
        sequences = [
            hmm.observables(*_ohlcv(train, s.begin, s.stop)) for s in train.target_series()
        ]
        candidates, best = [], None
        for n_states in h.states:
            self.params, selection = hmm.fit_hmm(
                sequences, [n_states], h.inits, self.ctx.seed, n_iter=h.iterations
            )
            score = validation_log_loss(val, self.predict_proba(val))
            candidates.append({**selection["candidates"][0], "validation_log_loss": score})
            if best is None or score < best[0]:
                best = (score, self.params)
        assert best is not None
        self.params = best[1]
        k = sequences[0].shape[1] if sequences else 0
        s = self.params.n_states
        self.info = {
            "params": (s - 1) + s * (s - 1) + s * k + s * k * (k + 1) // 2,
            "inputs": "daily observables of each whole series: " + ", ".join(hmm.OBSERVABLE_NAMES),
            "selection": {"criterion": "validation log loss", "candidates": candidates},
            "states": s,
        }

    def predict_proba(self, split: MarketSplit) -> np.ndarray:
        from reprolab.models.mamba import hmm

        p = np.full(len(split.rows), np.nan)
        for s in split.series:
            p[s.begin : s.stop] = hmm.predict_series(self.params, *_ohlcv(split, s.begin, s.stop))
        return p[split.target_rows].astype(np.float64)

    def save(self, directory: Path) -> None:
        path = directory / "hmm.json"
        write_json(path, self.params.to_dict())
        self.info["size_bytes"] = len(json.dumps(self.params.to_dict()))


# --------------------------------------------------------------------------- the registry
# name -> factory(context, the Mamba's parameter count); run in this order.
COMPARATORS: dict[str, Callable[[FitContext, int], Comparator]] = {
    "majority": lambda ctx, n: Majority(ctx),
    "persistence": lambda ctx, n: Persistence(ctx),
    "logistic": lambda ctx, n: Logistic(ctx),
    "boosted_trees": lambda ctx, n: BoostedTrees(ctx),
    "recurrent": lambda ctx, n: KerasRecurrent(ctx, n),
    "torch_gru": lambda ctx, n: TorchGru(ctx, n),
    "hmm": lambda ctx, n: Hmm(ctx),
}


def make_comparator(name: str, ctx: FitContext, mamba_params: int) -> Comparator:
    """The registry's comparator called ``name`` (the recurrent one is named by
    ``train.mamba.comparator``)."""
    for factory in COMPARATORS.values():
        model = factory(ctx, mamba_params)
        if model.name == name:
            return model
    raise ValueError(f"no comparator named {name!r} in the registry")
