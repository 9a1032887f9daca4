"""The training recipe of the physics-informed option pricer (supervised, physics,
residual-based refinement, L-BFGS polish) and its trained domain; ``stage.py`` runs it."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from reprolab.core import paths
from reprolab.core.config import GuardParams, OptionsParams, PinnTrainParams
from reprolab.core.seeding import int_seed, rng
from reprolab.datasets.options.generate import domain_bounds, heldout_band
from reprolab.models.pinn.maths import frame_coords
from reprolab.models.pinn.model import build_pinn, pinn_compile_kwargs

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

MODEL = "pinn"
DATASET = "options"
MODEL_DIR = paths.model_dir(MODEL)
METRICS_DIR = paths.train_metrics(MODEL)
CHECKPOINTS = paths.checkpoints(MODEL)


def trained_domain(options: OptionsParams) -> dict[str, list[float]]:
    """The box the network was trained on: the declared domain minus an edge held-out band.

    A band inside the range (not at an edge) cannot be cut from a box; it stays inside.
    """
    box = {k: [lo, hi] for k, (lo, hi) in domain_bounds(options.generate.domain).items()}
    column, low, high = heldout_band(options.split.heldout)
    lo, hi = box[column]
    if high >= hi:
        box[column][1] = low
    elif low <= lo:
        box[column][0] = high
    return box


# --------------------------------------------------------------------------- training
@dataclass
class PinnTrainResult:
    model: keras.Model
    history: list[dict[str, Any]]  # {"phase", "epoch", **logs} per completed epoch
    events: list[str]
    seconds: dict[str, float]  # wall time per train_guarded call (phase name)
    rar_points: np.ndarray  # (m, 4) interior points added by refinement (before repetition)


EpochHook = Callable[[str, int, dict[str, float]], None]


def _tile(gen: np.random.Generator, n_rows: int, n_pool: int) -> np.ndarray:
    """``n_rows`` indices into a pool of ``n_pool``: whole permutations, then a partial one."""
    reps = -(-n_rows // n_pool)
    return np.concatenate([gen.permutation(n_pool) for _ in range(reps)])[:n_rows]


_DONE_SUFFIX = ".done.npz"
_POLISH_VAL_EVERY = 10  # L-BFGS iterations between validation logs


def _val_terms(
    model: keras.Model, x_val: Mapping[str, np.ndarray], y_val: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """The validation loss and its terms (what early stopping watches in the other steps)."""
    terms = model.loss_terms(x_val, y_val)
    out = {k: float(v) for k, v in terms.items()}
    out["loss"] = float(model._total(terms))
    return out


def _save_step(path: Path, weights: list[np.ndarray], record: dict[str, Any]) -> None:
    """The weights and logs of a completed training step, so a rerun can skip it."""
    from reprolab.guard.common.checkpoint import save_npz

    meta = {k: v for k, v in record.items() if k != "fingerprint"}
    save_npz(path, record["fingerprint"], meta, {f"w_{i:04d}": w for i, w in enumerate(weights)})


def _load_step(path: Path, fingerprint: str) -> tuple[list[np.ndarray], dict[str, Any]] | None:
    from reprolab.guard.common.checkpoint import load_npz

    loaded = load_npz(path, fingerprint, log.warning)
    if loaded is None:
        return None
    record, arrays = loaded
    return [arrays[k] for k in sorted(arrays) if k.startswith("w_")], record


@contextlib.contextmanager
def _floatx(dtype: str) -> Iterator[None]:
    """Keras casts float arrays given to fit/evaluate to floatx: keep them float64 here."""
    import keras

    old = keras.config.floatx()
    keras.config.set_floatx(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(old)


def train_pinn(
    train: pd.DataFrame,
    val: pd.DataFrame,
    collocation: Mapping[str, pd.DataFrame],
    *,
    seed: int,
    checkpoint_dir: str | Path,
    params: PinnTrainParams,
    guard: GuardParams | None = None,
    bounds: Mapping[str, Any],
    on_epoch_end: EpochHook | None = None,
    candidate_sampler: Callable[[np.random.Generator, int], np.ndarray] | None = None,
    fingerprint: str = "",
    verbose: int = 0,
) -> PinnTrainResult:
    """Train a :class:`PinnPricer` in three phases, every step through ``train_guarded``.

    1. ``supervised_<i>``: price and delta labels (``call_price_k``, ``call_delta``) of
       ``train`` (columns x, tau, sigma, r).
    2. ``physics_<i>``: the same plus the PDE residual on ``collocation["interior"]`` and the
       terminal / boundary conditions (``call_price_k`` of those sets), weighted by
       ``params.loss_weights``.
    3. ``rar_<k>``: residual-based adaptive refinement, one round per ``params.lr_rar`` entry:
       |R| is evaluated on ``rar_candidates`` points drawn with ``rng(seed, "pinn", "rar", k)``
       (``candidate_sampler(gen, n)`` -> (n, 4) coordinates if given, else a draw from the
       interior pool, which already excludes the held-out band), the ``rar_points`` largest
       join the interior set ``rar_repeat`` times, and training continues.
    4. ``polish``: ``polish_iterations`` of full-batch L-BFGS (:mod:`reprolab.models.pinn.lbfgs`) on
       ``polish_rows`` training rows plus every terminal and boundary point, with the same
       loss weights; kept only if the validation loss falls. It logs the training loss every
       iteration and the validation terms every 10.

    Validation (early stopping, best weights) is the supervised loss on ``n_val`` rows of
    ``val``. ``on_epoch_end(phase, epoch, logs)`` gets the per-term training losses
    (``price``, ``delta``, ``pde``, ``terminal``, ``boundary``, ``loss``), ``val_*`` and
    ``val_price_rel_l2`` / ``val_delta_rmse``. Each step checkpoints under
    ``checkpoint_dir/<phase>`` (removed when it completes), so an interrupted run resumes.
    Deterministic on CPU: every random choice hangs off ``seed``.
    """
    from reprolab.guard.common.schedule import lr_multiplier
    from reprolab.guard.keras.fit import train_guarded
    from reprolab.models.pinn.lbfgs import lbfgs_full_batch

    p = params
    guard = guard or p.guard
    checkpoint_dir = Path(checkpoint_dir)
    events: list[str] = []
    history: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}

    x_all = frame_coords(train)
    y_all = train[["call_price_k", "call_delta"]].to_numpy(dtype=np.float64)
    vi = np.sort(rng(seed, "pinn", "val").permutation(len(val))[: min(p.n_val, len(val))])
    x_val = {"data": frame_coords(val)[vi]}
    y_val = {"data": val[["call_price_k", "call_delta"]].to_numpy(dtype=np.float64)[vi]}
    mean_sq_price = float(np.mean(y_val["data"][:, 0] ** 2))

    interior = frame_coords(collocation["interior"])
    terminal = frame_coords(collocation["terminal"])
    terminal_y = collocation["terminal"]["call_price_k"].to_numpy(dtype=np.float64)[:, None]
    boundary = frame_coords(collocation["boundary"])
    boundary_y = collocation["boundary"]["call_price_k"].to_numpy(dtype=np.float64)[:, None]

    weights: list[np.ndarray] | None = None
    setup = json.dumps({"params": dataclasses.asdict(p), "bounds": bounds}, sort_keys=True)

    def build() -> keras.Model:
        model = build_pinn(p, bounds=bounds, seed=seed)
        if weights is not None:  # continue from the previous step
            for var, w in zip(model.trainable_variables, weights, strict=True):
                var.assign(w)
        return model

    def rows(phase: str, pool: np.ndarray | None) -> tuple[dict, dict]:
        n = min(p.rows_per_epoch, len(x_all))
        idx = np.sort(rng(seed, "pinn", "rows", phase).permutation(len(x_all))[:n])
        x = {"data": x_all[idx]}
        y = {"data": y_all[idx]}
        if pool is not None:
            x["interior"] = pool[_tile(rng(seed, "pinn", "tile", phase, "interior"), n, len(pool))]
            t = _tile(rng(seed, "pinn", "tile", phase, "terminal"), n, len(terminal))
            b = _tile(rng(seed, "pinn", "tile", phase, "boundary"), n, len(boundary))
            x["terminal"], y["terminal"] = terminal[t], terminal_y[t]
            x["boundary"], y["boundary"] = boundary[b], boundary_y[b]
        return x, y

    def step_fingerprint(phase: str) -> str:
        return f"{fingerprint}|pinn|{phase}|{seed}|{setup}"

    def completed(phase: str) -> keras.Model | None:
        """The model after ``phase`` if an earlier, interrupted run completed it."""
        nonlocal weights
        done = _load_step(checkpoint_dir / f"{phase}{_DONE_SUFFIX}", step_fingerprint(phase))
        if done is None:
            return None
        weights, record = done
        history.extend(record["history"])
        events.extend(record["events"])
        events.append(f"{phase}: completed earlier; weights loaded from {checkpoint_dir}")
        seconds[phase] = record["seconds"]
        return build()

    def complete(phase: str, model: keras.Model, n_history: int, n_events: int) -> None:
        """Record ``phase`` as done (weights, its logs and events) so a rerun skips it."""
        nonlocal weights
        weights = [np.array(v.numpy(), copy=True) for v in model.trainable_variables]
        record = {
            "fingerprint": step_fingerprint(phase),
            "history": history[n_history:],
            "events": events[n_events:],
            "seconds": seconds[phase],
        }
        _save_step(checkpoint_dir / f"{phase}{_DONE_SUFFIX}", weights, record)

    def hook_for(phase: str) -> Callable[[int, dict[str, float]], None]:
        def hook(epoch: int, logs: dict[str, float]) -> None:
            logs = dict(logs)
            if "val_price" in logs:
                logs["val_price_rel_l2"] = math.sqrt(logs["val_price"] / mean_sq_price)
            if "val_delta" in logs:
                logs["val_delta_rmse"] = math.sqrt(logs["val_delta"])
            history.append({"phase": phase, "epoch": epoch, **logs})
            if on_epoch_end is not None:
                on_epoch_end(phase, epoch, logs)

        return hook

    def run(phase: str, epochs: int, lr: float, pool: np.ndarray | None) -> keras.Model:
        if (done := completed(phase)) is not None:
            return done
        x, y = rows(phase, pool)
        n_history, n_events = len(history), len(events)
        start = time.perf_counter()
        result = train_guarded(
            build,
            x,
            y,
            x_val,
            y_val,
            epochs=epochs,
            batch_size=p.batch_size,
            learning_rate=lr,
            patience=p.patience,
            seed=int_seed(seed, "pinn", phase),
            checkpoint_dir=checkpoint_dir / phase,
            guard=guard,
            on_epoch_end=hook_for(phase),
            verbose=verbose,
            compile_kwargs=functools.partial(pinn_compile_kwargs, epsilon=p.adam_epsilon),
            fingerprint=step_fingerprint(phase),
            lr_multiplier=functools.partial(
                lr_multiplier,
                steps=epochs,
                schedule=p.schedule,
                warmup_steps=0,
                min_lr_ratio=p.min_lr_ratio,
            ),
        )
        seconds[phase] = time.perf_counter() - start
        events.extend(f"{phase}: {e}" for e in result.events)
        complete(phase, result.model, n_history, n_events)
        return result.model

    def polish(model: keras.Model) -> keras.Model:
        """Full-batch L-BFGS on the supervised, terminal and boundary terms; kept only if the
        validation loss falls (else the weights before it stay)."""
        phase = "polish"
        if (done := completed(phase)) is not None:
            return done
        n = min(p.polish_rows, len(x_all))
        idx = np.sort(rng(seed, "pinn", "rows", phase).permutation(len(x_all))[:n])
        x = {"data": x_all[idx], "terminal": terminal, "boundary": boundary}
        y = {"data": y_all[idx], "terminal": terminal_y, "boundary": boundary_y}
        n_history, n_events = len(history), len(events)
        hook = hook_for(phase)
        val_before = _val_terms(model, x_val, y_val)

        def each(k: int, loss: float) -> None:
            logs = {"loss": loss}
            if k % _POLISH_VAL_EVERY == 0 or k == p.polish_iterations:
                logs.update({f"val_{t}": v for t, v in _val_terms(model, x_val, y_val).items()})
            hook(k - 1, logs)

        start = time.perf_counter()
        result = lbfgs_full_batch(
            model,
            lambda xp, yp: model._total(model.loss_terms(xp, yp)),
            x,
            y,
            iterations=p.polish_iterations,
            min_chunk_rows=guard.min_batch_size,
            on_iteration=each,
        )
        seconds[phase] = time.perf_counter() - start
        events.extend(f"{phase}: {e}" for e in result.events)
        val_after = _val_terms(model, x_val, y_val)
        summary = (
            f"{phase}: L-BFGS, {result.iterations} iterations ({result.evaluations} "
            f"evaluations) on {n} rows + {len(terminal) + len(boundary)} condition points: "
            f"loss {result.loss_start:.4g} -> {result.loss_end:.4g}, validation loss "
            f"{val_before['loss']:.4g} -> {val_after['loss']:.4g}"
        )
        if val_after["loss"] < val_before["loss"]:
            events.append(summary)
        else:
            for var, w in zip(model.trainable_variables, weights, strict=True):
                var.assign(w)
            events.append(f"{summary}; the validation loss did not fall: weights before kept")
        complete(phase, model, n_history, n_events)
        return model

    added: list[np.ndarray] = []
    with _floatx("float64"):
        for i, lr in enumerate(p.lr_supervised):
            model = run(f"supervised_{i}", p.epochs_supervised, lr, None)
        for i, lr in enumerate(p.lr_physics):
            model = run(f"physics_{i}", p.epochs_physics, lr, interior)
        pool = interior
        for k, lr in enumerate(p.lr_rar):
            gen = rng(seed, "pinn", "rar", k)
            if candidate_sampler is not None:
                cand = np.asarray(candidate_sampler(gen, p.rar_candidates), dtype=np.float64)
            else:
                take = min(p.rar_candidates, len(interior))
                cand = interior[np.sort(gen.choice(len(interior), take, replace=False))]
            res = np.abs(model.residual(cand[:, 0], cand[:, 1], cand[:, 2], cand[:, 3]))
            top = np.argsort(-res, kind="stable")[: p.rar_points]
            events.append(
                f"rar_{k}: |R| on {len(cand)} candidates: median {np.median(res):.3g}, "
                f"max {res.max():.3g}; added the {len(top)} largest x{p.rar_repeat}"
            )
            added.append(cand[top])
            pool = np.concatenate([pool, *([cand[top]] * p.rar_repeat)])
            model = run(f"rar_{k}", p.epochs_rar, lr, pool)
        if p.polish_iterations:
            model = polish(model)
        # Export a fresh build holding the final weights: a step trained here leaves the
        # model compiled (optimizer state in the .keras file), one loaded by a resumed run
        # does not, and the model file must not depend on where the run was interrupted.
        weights = [np.array(v.numpy(), copy=True) for v in model.trainable_variables]
        model = build()
    rar = np.concatenate(added) if added else np.zeros((0, 4))
    for stale in checkpoint_dir.glob(f"*{_DONE_SUFFIX}"):
        stale.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        checkpoint_dir.rmdir()
    return PinnTrainResult(
        model=model, history=history, events=events, seconds=seconds, rar_points=rar
    )
