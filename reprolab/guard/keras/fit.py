"""Guarded training shared by every Keras model: OOM, NaN/Inf, signals, device failures, resume.

``train_guarded`` trains one epoch per ``model.fit(initial_epoch=e, epochs=e + 1, shuffle=False)``
call on data permuted by a generator derived only from ``(seed, epoch)``, and checkpoints after
every epoch.
Every recovery goes back to the last completed epoch and replays it, so a run that was
interrupted, ran out of memory or fell back to the CPU ends with the same weights as a run
that did not (exactly, on CPU), as long as the settings it then ran with are the same.

Checkpoint: one ``.npz`` file, ``<checkpoint_dir>/checkpoint.npz``, in the format and under
the corrupt-file policy of :mod:`reprolab.guard.common.checkpoint`; its fingerprint hashes the
set-up (the caller's fingerprint, seed, learning rate, batch size, data and variable shapes)::

    meta            the header, plus state (next_epoch, batch_size, learning_rate,
                    best_epoch, best_val_loss, wait, nan_retries, on_cpu, stopped, history,
                    events)
    model_0000...   every ``model.variables`` array (weights and seed-generator states)
    opt_0000...     every ``model.optimizer.variables`` array (iterations, lr, moments)
    best_0000...    the model variables of the best epoch so far (absent before epoch 1)

Epochs are 0-based in the API (``on_epoch_end``, ``history``, ``best_epoch``), like Keras;
messages print them 1-based as "epoch k/N", like Keras's progress bar.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import logging
import math
import re
import signal
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reprolab.core.config import GuardParams
from reprolab.core.errors import (
    CheckpointError,
    PipelineError,
    ResourceLimitError,
    ValidationError,
)
from reprolab.core.seeding import int_seed, rng
from reprolab.guard.common.checkpoint import discard, load_npz, save_npz, text_fingerprint
from reprolab.guard.common.signals import Flag, TrainingInterrupted, signal_at, signals_to_flag

if TYPE_CHECKING:  # TensorFlow costs seconds to import: only code that trains pays for it
    import keras

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.npz"
_DEVICE_WORDS = re.compile(r"\b(gpu|cuda|cudnn|device)\b", re.IGNORECASE)

CompileKwargs = Callable[[float], dict[str, Any]]

__all__ = [
    "CHECKPOINT_NAME",
    "TrainResult",
    "checkpoint_path",
    "default_compile_kwargs",
    "train_guarded",
]


def checkpoint_path(checkpoint_dir: Path) -> Path:
    """Where ``train_guarded`` keeps its checkpoint inside ``checkpoint_dir``."""
    return Path(checkpoint_dir) / CHECKPOINT_NAME


@dataclass
class TrainResult:
    model: keras.Model
    history: list[dict[str, float]]  # one entry per completed epoch, train and val logs
    best_epoch: int  # 0-based; its weights are the ones in ``model``
    batch_size: int  # the batch size training ended with (after any OOM halving)
    learning_rate: float  # the learning rate training ended with (after any NaN halving)
    events: list[str]  # every guard action, in plain words, including earlier resumed runs


def default_compile_kwargs(learning_rate: float) -> dict[str, Any]:
    """Adam, binary cross-entropy, accuracy and AUC: the direction classifiers' set-up."""
    import keras

    return {
        "optimizer": keras.optimizers.Adam(learning_rate=learning_rate),
        "loss": "binary_crossentropy",
        "metrics": ["accuracy", keras.metrics.AUC(name="auc")],
    }


# --------------------------------------------------------------------------- internals
@dataclass
class _State:
    """Everything besides arrays that a resumed run needs (stored as JSON in the checkpoint)."""

    batch_size: int
    learning_rate: float
    next_epoch: int = 0
    best_epoch: int = -1
    best_val_loss: float = math.inf
    wait: int = 0  # epochs since the validation loss last improved
    nan_retries: int = 0
    on_cpu: bool = False
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


@dataclass
class _Arrays:
    """The last good state: model and optimizer variables at the last completed epoch."""

    model: list[np.ndarray]
    optimizer: list[np.ndarray]
    best: list[np.ndarray] | None = None


class _NonFiniteLoss(Exception):
    def __init__(self, where: str, value: float) -> None:
        super().__init__(where)
        self.where = where
        self.value = value


class _Interrupt(Exception):
    pass


@functools.cache
def _guard_callback_class() -> type:
    import keras

    class GuardCallback(keras.callbacks.Callback):
        """Checks every batch: a non-finite loss or a pending signal stops the epoch now."""

        def __init__(self, flag: Flag, epoch: int, epochs: int) -> None:
            super().__init__()
            self.flag = flag
            self.epoch = epoch
            self.epochs = epochs

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            loss = (logs or {}).get("loss")
            # The logged loss is the epoch's running mean: it turns non-finite at the first
            # batch whose loss does.
            if loss is not None and not math.isfinite(float(loss)):
                steps = self.params.get("steps") if self.params else None
                of = f"/{steps}" if steps else ""
                where = f"epoch {self.epoch + 1}/{self.epochs}, batch {batch + 1}{of}"
                raise _NonFiniteLoss(where, float(loss))
            if self.flag.signum is not None:
                raise _Interrupt

        def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if self.flag.signum is not None:
                raise _Interrupt

    return GuardCallback


def _leaves(x: Any) -> list[Any]:
    if x is None:
        return []
    if isinstance(x, dict):
        return [leaf for k in sorted(x) for leaf in _leaves(x[k])]
    if isinstance(x, list | tuple):
        return [leaf for v in x for leaf in _leaves(v)]
    return [x]


def _as_arrays(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, dict):
        return {k: _as_arrays(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_as_arrays(v) for v in x)
    return np.asarray(x)


def _take(x: Any, idx: np.ndarray) -> Any:
    if x is None:
        return None
    if isinstance(x, dict):
        return {k: _take(v, idx) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_take(v, idx) for v in x)
    return x[idx]


def _describe(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, dict):
        return {str(k): _describe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_describe(v) for v in x]
    return {"shape": list(x.shape), "dtype": str(x.dtype)}


def _rows(x: Any, name: str) -> int:
    leaves = _leaves(x)
    if not leaves:
        raise ValidationError(f"train_guarded: {name} is empty")
    n = {len(leaf) for leaf in leaves}
    if len(n) != 1:
        raise ValidationError(f"train_guarded: the arrays of {name} differ in length ({n})")
    return n.pop()


def _epoch_name(epoch: int, epochs: int) -> str:
    return f"epoch {epoch + 1}/{epochs}"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _device(on_cpu: bool) -> contextlib.AbstractContextManager[Any]:
    if not on_cpu:
        return contextlib.nullcontext()
    import tensorflow as tf

    return tf.device("/CPU:0")


def _build(
    build_model: Callable[[], keras.Model],
    compile_kwargs: CompileKwargs,
    learning_rate: float,
    sample: Any,
    on_cpu: bool,
) -> keras.Model:
    """Build, compile and create every variable, so checkpoints can be loaded into them."""
    with _device(on_cpu):
        model = build_model()
        model.compile(**compile_kwargs(learning_rate))
        if not model.built:
            model(sample)
        model.optimizer.build(model.trainable_variables)
    return model


def _capture(model: keras.Model, best: list[np.ndarray] | None) -> _Arrays:
    return _Arrays(
        model=[np.array(v.numpy(), copy=True) for v in model.variables],
        optimizer=[np.array(v.numpy(), copy=True) for v in model.optimizer.variables],
        best=best,
    )


def _assign(variables: Sequence[Any], arrays: Sequence[np.ndarray], what: str) -> None:
    if len(variables) != len(arrays) or any(
        tuple(v.shape) != a.shape for v, a in zip(variables, arrays, strict=False)
    ):
        raise CheckpointError(f"{what}: variables do not match the model (architecture changed?)")
    for v, a in zip(variables, arrays, strict=True):
        v.assign(a)


def _set_learning_rate(model: keras.Model, learning_rate: float) -> bool:
    """Set a float learning rate; False where the optimizer runs a schedule (not settable)."""
    import keras

    opt = model.optimizer
    if isinstance(
        getattr(opt, "_learning_rate", None), keras.optimizers.schedules.LearningRateSchedule
    ):
        return False
    opt.learning_rate = learning_rate
    return True


def _restore(model: keras.Model, arrays: _Arrays, learning_rate: float, what: str) -> None:
    _assign(model.variables, arrays.model, what)
    _assign(model.optimizer.variables, arrays.optimizer, what)
    _set_learning_rate(model, learning_rate)  # the restored lr variable predates any halving


def _save_checkpoint(path: Path, setup: dict[str, Any], state: _State, arrays: _Arrays) -> None:
    # allow_nan: metrics such as AUC can be NaN and best_val_loss starts at inf.
    payload = {f"model_{i:04d}": a for i, a in enumerate(arrays.model)}
    payload.update({f"opt_{i:04d}": a for i, a in enumerate(arrays.optimizer)})
    payload.update({f"best_{i:04d}": a for i, a in enumerate(arrays.best or [])})
    save_npz(path, _hash(setup), {"state": dataclasses.asdict(state)}, payload)


def _load_checkpoint(
    path: Path, setup: dict[str, Any], event: Callable[[str], None]
) -> tuple[_State, _Arrays] | None:
    """The state and arrays of a checkpoint made under ``setup``; None if missing or discarded."""
    loaded = load_npz(path, _hash(setup), event)
    if loaded is None:
        return None
    meta, z = loaded
    try:
        state = _State(**meta["state"])
    except (KeyError, TypeError) as exc:
        event(f"discarded checkpoint {path}: unreadable (state: {exc}); training from scratch")
        discard(path)
        return None
    arrays = _Arrays(
        model=[z[k] for k in z if k.startswith("model_")],
        optimizer=[z[k] for k in z if k.startswith("opt_")],
        best=[z[k] for k in z if k.startswith("best_")] or None,
    )
    return state, arrays


def _hash(setup: dict[str, Any]) -> str:
    return text_fingerprint(json.dumps(setup, sort_keys=True))


def _remove_checkpoint(directory: Path) -> None:
    """Remove the guard's files, then the directory itself if nothing else lives there."""
    discard(directory / CHECKPOINT_NAME)
    with contextlib.suppress(OSError):
        directory.rmdir()


# --------------------------------------------------------------------------- the guard
def train_guarded(
    build_model: Callable[[], keras.Model],
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    patience: int,
    seed: int,
    checkpoint_dir: Path,
    guard: GuardParams,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    verbose: int = 1,
    compile_kwargs: CompileKwargs | None = None,
    fingerprint: str = "",
    lr_multiplier: Callable[[int], float] | None = None,
) -> TrainResult:
    """Train ``build_model()`` under the guard; see the module docstring.

    ``build_model`` returns an uncompiled model; ``compile_kwargs(lr)`` gives the
    ``model.compile`` arguments (default: :func:`default_compile_kwargs`) and must build its
    optimizer with a float learning rate for NaN recovery. Inputs are numpy arrays (or dicts,
    lists or tuples of them). ``fingerprint`` should identify everything else that decides
    the result (the params section, a data hash): a checkpoint made under another
    fingerprint is discarded, not resumed. User ``callbacks`` see one ``fit`` call per
    epoch (``on_train_begin`` every epoch), so stateful ones such as Keras's EarlyStopping
    do not belong here. ``on_epoch_end(epoch, logs)`` runs once per newly completed epoch,
    after its checkpoint is on disk; epochs before a resume point are not reported again.
    ``lr_multiplier(epoch)`` scales the learning rate of each epoch (a per-epoch schedule);
    NaN recovery halves the base rate it multiplies.
    """
    import keras
    import tensorflow as tf

    if epochs < 1 or batch_size < 1 or patience < 1 or not learning_rate > 0:
        raise ValidationError(
            f"train_guarded: epochs={epochs}, batch_size={batch_size}, patience={patience} "
            f"must be >= 1 and learning_rate={learning_rate} > 0"
        )
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    checkpoint_dir = Path(checkpoint_dir)
    ckpt = checkpoint_dir / CHECKPOINT_NAME
    for stale in checkpoint_dir.glob(f".{CHECKPOINT_NAME}.*.tmp"):  # a write killed midway
        stale.unlink(missing_ok=True)
    compile_kwargs = compile_kwargs or default_compile_kwargs
    x_train, y_train = _as_arrays(x_train), _as_arrays(y_train)
    x_val, y_val = _as_arrays(x_val), _as_arrays(y_val)
    n_train = _rows(x_train, "x_train")
    _rows(x_val, "x_val")
    sample = _take(x_train, np.arange(1))

    model = _build(build_model, compile_kwargs, learning_rate, sample, on_cpu=False)
    setup = {
        "fingerprint": fingerprint,
        "seed": seed,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "data": _describe([x_train, y_train, x_val, y_val]),
        "variables": [[list(v.shape), str(v.dtype)] for v in model.variables],
    }
    state = _State(batch_size=batch_size, learning_rate=learning_rate)
    last_good = _capture(model, best=None)

    def discarded(msg: str) -> None:
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        log.warning(msg)
        state.events.append(msg)

    loaded = _load_checkpoint(ckpt, setup, discarded)
    if loaded is not None:
        resumed, arrays = loaded
        resumed.events = [*state.events, *resumed.events]
        state = resumed
        if state.on_cpu:
            model = _build(build_model, compile_kwargs, learning_rate, sample, on_cpu=True)
        _restore(model, arrays, state.learning_rate, str(ckpt))
        last_good = arrays
        msg = (
            f"resumed from {ckpt} at {_epoch_name(state.next_epoch, epochs)} "
            f"(batch size {state.batch_size}, learning rate {state.learning_rate:g})"
        )
        log.info(msg)
        state.events.append(msg)

    def event(msg: str, level: int = logging.WARNING) -> None:
        log.log(level, msg)
        state.events.append(msg)

    guard_cb_class = _guard_callback_class()
    val_data = (x_val, y_val) if y_val is not None else (x_val,)
    with signals_to_flag(state.events) as flag:
        epoch = state.next_epoch
        while epoch < epochs and not state.stopped:
            name = _epoch_name(epoch, epochs)
            if lr_multiplier is not None:
                _set_learning_rate(model, state.learning_rate * lr_multiplier(epoch))
            # Everything random in an epoch hangs off (seed, epoch): a replay draws the same.
            keras.utils.set_random_seed(int_seed(seed, "train_guarded", "epoch", epoch))
            order = rng(seed, "train_guarded", "permutation", epoch).permutation(n_train)
            signal_at(f"{checkpoint_dir.name}:{epoch}")  # tests only: REPROLAB_SIGNAL_AT
            # One permuted copy of the training arrays per epoch: the price of fit(shuffle=False)
            # replaying a known order at any batch size.
            try:
                with _device(state.on_cpu):
                    fitted = model.fit(
                        _take(x_train, order),
                        _take(y_train, order),
                        batch_size=state.batch_size,
                        epochs=epoch + 1,
                        initial_epoch=epoch,
                        shuffle=False,
                        validation_data=val_data,
                        callbacks=[guard_cb_class(flag, epoch, epochs), *callbacks],
                        verbose=verbose,
                    )
                logs = {k: float(v[-1]) for k, v in fitted.history.items()}
                if "val_loss" not in logs:
                    raise PipelineError(f"{name}: fit reported no val_loss to stop early on")
                if not math.isfinite(logs["val_loss"]):
                    raise _NonFiniteLoss(f"{name}, validation", logs["val_loss"])

            except _Interrupt:
                assert flag.signum is not None
                signame = signal.Signals(flag.signum).name
                state.next_epoch = epoch  # replay the interrupted epoch from its start
                msg = (
                    f"interrupted at {name} ({signame}); "
                    f"run the stage again to resume from {checkpoint_dir}"
                )
                state.events.append(msg)  # not logged: the exception carries it to the user
                _save_checkpoint(ckpt, setup, state, last_good)
                raise TrainingInterrupted(
                    msg, epoch=epoch, signum=flag.signum, checkpoint_dir=checkpoint_dir
                ) from None

            except _NonFiniteLoss as exc:
                lr = state.learning_rate
                if state.nan_retries >= guard.max_nan_retries or not _set_learning_rate(
                    model, lr / 2
                ):
                    raise PipelineError(
                        f"the loss became non-finite ({exc.value}) at {exc.where} with "
                        f"learning rate {lr:g} after {state.nan_retries} halving(s) "
                        f"(guard.max_nan_retries = {guard.max_nan_retries}); lower the "
                        "learning rate or look for NaN/Inf in the inputs"
                    ) from None
                state.nan_retries += 1
                state.learning_rate = lr / 2
                _restore(model, last_good, state.learning_rate, "last good state")
                event(
                    f"non-finite loss ({exc.value}) at {exc.where}: restored the weights of "
                    f"the last completed epoch and halved the learning rate to "
                    f"{state.learning_rate:g} (retry {state.nan_retries} of "
                    f"{guard.max_nan_retries})"
                )
                continue

            except (tf.errors.ResourceExhaustedError, MemoryError) as exc:
                bs = state.batch_size
                if bs <= guard.min_batch_size:
                    raise ResourceLimitError(
                        f"out of memory at {name} with batch size {bs}, which is already at "
                        f"guard.min_batch_size = {guard.min_batch_size}; use a smaller model "
                        "or free memory"
                    ) from exc
                state.batch_size = max(bs // 2, guard.min_batch_size)
                del exc
                gc.collect()  # let the failed attempt's tensors go before the retry
                _restore(model, last_good, state.learning_rate, "last good state")
                event(
                    f"out of memory at {name} with batch size {bs}: retrying the epoch from "
                    f"the last completed epoch with batch size {state.batch_size}"
                )
                continue

            except (
                tf.errors.InternalError,
                tf.errors.UnknownError,
                tf.errors.NotFoundError,
            ) as exc:
                detail = _first_line(exc)
                if state.on_cpu or not _DEVICE_WORDS.search(detail):
                    raise
                msg = (
                    f"device failure at {name} ({type(exc).__name__}: {detail}): falling "
                    "back to the CPU and retrying the epoch"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                event(msg)
                state.on_cpu = True
                del exc
                model = _build(build_model, compile_kwargs, learning_rate, sample, on_cpu=True)
                _restore(model, last_good, state.learning_rate, "last good state")
                continue

            # The epoch completed: early-stopping bookkeeping, then a checkpoint.
            state.history.append(logs)
            best = last_good.best
            current = _capture(model, best=None)
            if logs["val_loss"] < state.best_val_loss:
                state.best_val_loss = logs["val_loss"]
                state.best_epoch = epoch
                state.wait = 0
                best = current.model
            else:
                state.wait += 1
                if state.wait >= patience:
                    state.stopped = True
                    event(
                        f"early stopping after {name}: the validation loss has not improved "
                        f"for {patience} epoch(s) since epoch {state.best_epoch + 1}",
                        logging.INFO,
                    )
            current.best = best
            last_good = current
            state.next_epoch = epoch + 1
            _save_checkpoint(ckpt, setup, state, last_good)
            if on_epoch_end is not None:
                on_epoch_end(epoch, dict(logs))
            if flag.signum is not None and state.next_epoch < epochs and not state.stopped:
                signame = signal.Signals(flag.signum).name
                msg = (
                    f"interrupted after {name} ({signame}); "
                    f"run the stage again to resume from {checkpoint_dir}"
                )
                state.events.append(msg)  # not logged: the exception carries it to the user
                _save_checkpoint(ckpt, setup, state, last_good)
                raise TrainingInterrupted(
                    msg, epoch=epoch + 1, signum=flag.signum, checkpoint_dir=checkpoint_dir
                )
            epoch += 1

    if last_good.best is not None:
        _assign(model.variables, last_good.best, "best weights")
        state.events.append(
            f"restored the weights of epoch {state.best_epoch + 1} "
            f"(best validation loss {state.best_val_loss:.6g})"
        )
    _remove_checkpoint(checkpoint_dir)
    return TrainResult(
        model=model,
        history=state.history,
        best_epoch=state.best_epoch,
        batch_size=state.batch_size,
        learning_rate=state.learning_rate,
        events=state.events,
    )


def keras_names(logs: Mapping[str, float]) -> dict[str, float]:
    """Keras epoch logs as dvclive names: ``val_loss`` -> ``val/loss``, ``loss`` ->
    ``train/loss``."""
    return {
        (f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"): value
        for key, value in logs.items()
    }
