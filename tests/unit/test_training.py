"""The training guard under real faults: OOM, NaN/Inf, signals, device failures, checkpoints.

Faults are real: callbacks raise TensorFlow's own error types, a learning rate past the
stability limit makes the loss overflow, and signals go to real processes. Tiny Dense models
on 256 x 4 random rows keep the whole file to about a minute.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from reprolab.core.errors import PipelineError, ResourceLimitError
from reprolab.guard.common.signals import TrainingInterrupted
from reprolab.guard.keras.fit import CHECKPOINT_NAME, train_guarded
from tests.tiny import repo_params

ROOT = Path(__file__).resolve().parents[2]
N_ROWS = 256


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    x = g.normal(size=(N_ROWS, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
    xv = g.normal(size=(64, 4)).astype("float32")
    yv = (xv[:, 0] + 0.5 * xv[:, 1] > 0).astype("float32")
    return x, y, xv, yv


def build_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )


def train(ckpt: Path, data: Any = None, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "epochs": 3,
        "batch_size": 32,
        "learning_rate": 1e-2,
        "patience": 5,
        "seed": 7,
        "guard": replace(repo_params().train.mamba.guard, min_batch_size=8, max_nan_retries=3),
        "verbose": 0,
    }
    kwargs.update(overrides)
    return train_guarded(build_model, *(data or make_data()), checkpoint_dir=ckpt, **kwargs)


def assert_same_weights(a: keras.Model, b: keras.Model) -> None:
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The uninterrupted in-process run that recoveries must reproduce exactly."""
    return train(tmp_path_factory.mktemp("clean") / "ckpt")


class EpochAware(keras.callbacks.Callback):
    epoch = -1

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch


# --------------------------------------------------------------------------- OOM
class OutOfMemoryAbove(EpochAware):
    """Raises a real OOM error at the third batch of ``limit``+ rows, from epoch ``start`` on.

    Mid-epoch, so that two optimizer steps have already changed the weights: the retry must
    start from the last checkpoint, not from there.
    """

    def __init__(self, limit: int, start: int, error: type[BaseException]) -> None:
        super().__init__()
        self.limit, self.start, self.error = limit, start, error

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        batch_size = math.ceil(N_ROWS / self.params["steps"])  # fit's batches, as run
        if self.epoch >= self.start and batch_size > self.limit and batch >= 2:
            msg = f"OOM when allocating tensor with shape[{batch_size},8]"
            if self.error is MemoryError:
                raise MemoryError(msg)
            raise tf.errors.ResourceExhaustedError(None, None, msg)


@pytest.mark.parametrize("error", [tf.errors.ResourceExhaustedError, MemoryError])
def test_oom_halves_the_batch_and_completes(tmp_path: Path, error: type) -> None:
    result = train(
        tmp_path / "ckpt", batch_size=64, callbacks=[OutOfMemoryAbove(16, start=1, error=error)]
    )
    assert result.batch_size == 16
    assert len(result.history) == 3
    oom = [e for e in result.events if e.startswith("out of memory")]
    assert len(oom) == 2
    assert "epoch 2/3 with batch size 64" in oom[0] and "batch size 32" in oom[0]
    assert "batch size 32" in oom[1] and oom[1].endswith("batch size 16")
    # Steps of completed epochs only (4 at 64 rows, then 16 + 16): failed attempts were undone.
    assert int(result.model.optimizer.iterations.numpy()) == 4 + 16 + 16
    assert not (tmp_path / "ckpt").exists()  # removed on success


def test_oom_at_the_smallest_batch_is_a_resource_limit(tmp_path: Path) -> None:
    oom = OutOfMemoryAbove(4, start=0, error=tf.errors.ResourceExhaustedError)
    with pytest.raises(ResourceLimitError) as info:
        train(tmp_path / "ckpt", callbacks=[oom])
    msg = str(info.value)
    assert "\n" not in msg
    assert "batch size 8" in msg and "guard.min_batch_size = 8" in msg


# --------------------------------------------------------------------------- NaN / Inf
def diverging_problem() -> tuple[np.ndarray, ...]:
    """y = w*x with x = 1: plain SGD on the MSE multiplies the error by (1 - 2*lr) per step.

    lr = 1.5 doubles it every step (the loss overflows to inf within an epoch); lr = 0.75
    halves it: exactly one halving of the learning rate turns divergence into convergence.
    """
    x = np.ones((N_ROWS, 1), "float32")
    y = np.full((N_ROWS, 1), 1e15, "float32")
    return x, y, x[:64], y[:64]


def build_linear() -> keras.Model:
    return keras.Sequential(
        [keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")]
    )


def sgd_mse(lr: float) -> dict[str, Any]:
    return {"optimizer": keras.optimizers.SGD(learning_rate=lr), "loss": "mse"}


def train_diverging(ckpt: Path, retries: int) -> Any:
    return train_guarded(
        build_linear,
        *diverging_problem(),
        epochs=2,
        batch_size=8,
        learning_rate=1.5,
        patience=5,
        seed=3,
        checkpoint_dir=ckpt,
        guard=replace(repo_params().train.mamba.guard, min_batch_size=8, max_nan_retries=retries),
        compile_kwargs=sgd_mse,
        verbose=0,
    )


def test_nan_loss_halves_the_learning_rate_and_completes(tmp_path: Path) -> None:
    result = train_diverging(tmp_path / "ckpt", retries=3)
    assert result.learning_rate == 0.75
    assert len(result.history) == 2
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["val_loss"]) for h in result.history)
    (event,) = [e for e in result.events if e.startswith("non-finite loss")]
    assert "epoch 1/2, batch" in event and "halved the learning rate to 0.75" in event
    assert int(result.model.optimizer.iterations.numpy()) == 2 * 32  # the diverged steps undone
    (kernel,) = result.model.get_weights()
    assert kernel.item() == pytest.approx(1e15, rel=1e-6)  # converged after the halving


def test_nan_loss_without_retries_names_epoch_and_batch(tmp_path: Path) -> None:
    with pytest.raises(PipelineError) as info:
        train_diverging(tmp_path / "ckpt", retries=0)
    msg = str(info.value)
    assert "\n" not in msg
    assert "non-finite" in msg and "guard.max_nan_retries = 0" in msg
    batch = int(msg.split("epoch 1/2, batch ")[1].split("/32")[0])
    assert 1 < batch <= 32  # it overflowed partway through the first epoch


# --------------------------------------------------------------------------- device
class DeviceFailsOnce(EpochAware):
    fired = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.epoch == 1 and batch == 2 and not self.fired:
            self.fired = True
            raise tf.errors.InternalError(None, None, "GPU device failure: CUDA error")


def test_device_failure_falls_back_to_cpu(tmp_path: Path, clean: Any) -> None:
    with pytest.warns(RuntimeWarning, match="falling back to the CPU"):
        result = train(tmp_path / "ckpt", callbacks=[DeviceFailsOnce()])
    assert any("device failure at epoch 2/3" in e for e in result.events)
    assert "CPU" in result.model.weights[0].value.device
    assert_same_weights(result.model, clean.model)  # the epoch was replayed, not continued


def test_other_internal_errors_are_not_swallowed(tmp_path: Path) -> None:
    class Fails(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            raise tf.errors.InternalError(None, None, "graph rewrite failed")

    with pytest.raises(tf.errors.InternalError):
        train(tmp_path / "ckpt", callbacks=[Fails()])


# --------------------------------------------------------------------------- checkpoints
class SignalSelf(EpochAware):
    """Sends a real SIGTERM to this process in the middle of epoch 2."""

    sent = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.epoch == 1 and batch == 2 and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def interrupt(ckpt: Path, **overrides: Any) -> TrainingInterrupted:
    with pytest.raises(TrainingInterrupted) as info:
        train(ckpt, callbacks=[SignalSelf()], **overrides)
    assert (ckpt / CHECKPOINT_NAME).is_file()
    return info.value


def test_in_process_signal_resume_is_exact(tmp_path: Path, clean: Any) -> None:
    before = signal.getsignal(signal.SIGTERM)
    exc = interrupt(tmp_path / "ckpt")
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert exc.epoch == 1 and exc.exit_code == 128 + signal.SIGTERM
    hint = "interrupted at epoch 2/3 (SIGTERM); run the stage again to resume from"
    assert str(exc) == f"{hint} {tmp_path / 'ckpt'}"
    seen: list[tuple[int, dict[str, float]]] = []
    result = train(tmp_path / "ckpt", on_epoch_end=lambda epoch, logs: seen.append((epoch, logs)))
    assert [epoch for epoch, _ in seen] == [1, 2]  # only the epochs this run trained
    assert {"loss", "auc", "val_loss", "val_accuracy", "val_auc"} <= seen[0][1].keys()
    assert any(e.startswith("resumed from") for e in result.events)
    assert [h["val_loss"] for h in result.history] == [h["val_loss"] for h in clean.history]
    assert_same_weights(result.model, clean.model)


@pytest.mark.parametrize(
    ("change", "differ"), [({"fingerprint": "params-b"}, "fingerprint"), ({"seed": 8}, "seed")]
)
def test_checkpoint_of_another_setup_is_discarded(
    tmp_path: Path, clean: Any, change: dict[str, Any], differ: str
) -> None:
    interrupt(tmp_path / "ckpt", fingerprint="params-a")
    with pytest.warns(RuntimeWarning, match="discarded checkpoint.*different set-up"):
        result = train(tmp_path / "ckpt", **{"fingerprint": "params-a", **change})
    assert result.events[0].startswith("discarded checkpoint")
    assert not any(e.startswith("resumed") for e in result.events)
    assert len(result.history) == 3
    if differ == "fingerprint":  # trained from scratch: the same as a clean run
        assert_same_weights(result.model, clean.model)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_checkpoint_is_discarded_and_training_restarts(
    tmp_path: Path, clean: Any, damage: str
) -> None:
    path = tmp_path / "ckpt" / CHECKPOINT_NAME
    interrupt(tmp_path / "ckpt")
    data = path.read_bytes()
    path.write_bytes(b"not a checkpoint" if damage == "garbage" else data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match=f"discarded checkpoint {path}: unreadable"):
        result = train(tmp_path / "ckpt")
    assert not any(e.startswith("resumed") for e in result.events)
    assert_same_weights(result.model, clean.model)  # from scratch: a clean run's weights


# --------------------------------------------------------------------------- early stopping
def test_early_stopping_restores_the_best_weights(tmp_path: Path) -> None:
    x, y, xv, yv = make_data()
    # Validation labels flipped: the better it fits the training set, the worse validation gets.
    result = train(
        tmp_path / "ckpt", data=(x, y, xv, 1 - yv), epochs=20, patience=2, learning_rate=0.05
    )
    assert len(result.history) == result.best_epoch + 3 < 20
    assert any(e.startswith("early stopping after") for e in result.events)
    val = result.model.evaluate(xv, 1 - yv, batch_size=32, verbose=0, return_dict=True)
    best = result.history[result.best_epoch]["val_loss"]
    assert val["loss"] == pytest.approx(best, rel=1e-6, abs=0)
    assert val["loss"] != pytest.approx(result.history[-1]["val_loss"], rel=1e-4)


# --------------------------------------------------------------------------- processes
SCRIPT = """
import sys, time
from pathlib import Path

sys.path.insert(0, {root!r})
import keras
import numpy as np

from reprolab.core.config import GuardParams
from reprolab.core.errors import PipelineError
from reprolab.guard.keras.fit import train_guarded

out, ckpt, pause = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
g = np.random.default_rng(0)
x = g.normal(size=(256, 4)).astype("float32")
y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
xv = g.normal(size=(64, 4)).astype("float32")
yv = (xv[:, 0] + 0.5 * xv[:, 1] > 0).astype("float32")


def build():
    return keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])


class Progress(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        print(f"epoch {{epoch + 1}}", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(pause)  # keeps an epoch long enough for the test to signal into it


try:
    result = train_guarded(
        build, x, y, xv, yv, epochs=4, batch_size=32, learning_rate=1e-2, patience=5,
        seed=11, checkpoint_dir=ckpt, guard=GuardParams(min_batch_size=8, max_nan_retries=3),
        callbacks=[Progress()], verbose=0,
    )
except PipelineError as exc:
    print(f"error: {{exc}}", file=sys.stderr)
    sys.exit(exc.exit_code)
for event in result.events:
    print(f"event: {{event}}", flush=True)
np.save(out, np.concatenate([w.ravel() for w in result.model.get_weights()]))
"""


def script(tmp_path: Path) -> Path:
    path = tmp_path / "train_tiny.py"
    path.write_text(SCRIPT.format(root=str(ROOT)))
    return path


def start(tmp_path: Path, out: Path, ckpt: Path, pause: float, stderr: Any) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script(tmp_path)), str(out), str(ckpt), str(pause)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Two uninterrupted runs in two processes at once: their final weights."""
    tmp = tmp_path_factory.mktemp("reference")
    procs = [
        start(tmp, tmp / f"w{i}.npy", tmp / f"ckpt{i}", 0.0, subprocess.DEVNULL) for i in range(2)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    return [np.load(tmp / f"w{i}.npy") for i in range(2)]


@pytest.mark.slow
def test_two_processes_give_identical_weights(reference: list[np.ndarray]) -> None:
    np.testing.assert_array_equal(reference[0], reference[1])


def interrupt_in_epoch_2(proc: subprocess.Popen, sig: signal.Signals) -> int:
    """Wait for the script to announce epoch 2, send ``sig``, return the exit code."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "epoch 2":
            proc.send_signal(sig)
            break
    proc.communicate(timeout=300)
    return proc.returncode


@pytest.mark.slow
def test_signals_in_subprocesses_then_resume_is_exact(
    tmp_path: Path, reference: list[np.ndarray]
) -> None:
    """SIGTERM to one process, SIGINT to another (run side by side), then both rerun."""
    runs = {sig: tmp_path / sig.name for sig in (signal.SIGTERM, signal.SIGINT)}
    for d in runs.values():
        d.mkdir()
    with contextlib.ExitStack() as stack:
        procs = {
            sig: start(d, d / "w.npy", d / "ckpt", 0.05, stack.enter_context(open(d / "err", "w")))
            for sig, d in runs.items()
        }
        with ThreadPoolExecutor(len(procs)) as pool:
            codes = dict(
                zip(procs, pool.map(interrupt_in_epoch_2, procs.values(), procs), strict=True)
            )

    for sig, d in runs.items():
        ckpt = d / "ckpt"
        assert codes[sig] == 128 + sig
        stderr = (d / "err").read_text()
        hints = [line for line in stderr.splitlines() if "resume from" in line]
        assert hints == [
            f"error: interrupted at epoch 2/4 ({sig.name}); "
            f"run the stage again to resume from {ckpt}"
        ]
        assert (ckpt / CHECKPOINT_NAME).is_file() and not (d / "w.npy").exists()

    reruns = {
        sig: start(d, d / "w.npy", d / "ckpt", 0.0, subprocess.PIPE) for sig, d in runs.items()
    }
    for sig, proc in reruns.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert "event: resumed from" in out
        assert out.startswith("epoch 2\n")  # epoch 1 came from the checkpoint
        assert not (runs[sig] / "ckpt").exists()
        np.testing.assert_array_equal(np.load(runs[sig] / "w.npy"), reference[0])


def test_a_per_epoch_schedule_sets_every_epochs_learning_rate(tmp_path: Path) -> None:
    from reprolab.guard.common.schedule import lr_multiplier

    seen: list[float] = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            seen.append(float(self.model.optimizer.learning_rate))

    factor = lambda e: lr_multiplier(e, 3, "cosine", 0, 0.1)  # noqa: E731
    result = train(tmp_path / "ckpt", callbacks=[Record()], lr_multiplier=factor)
    np.testing.assert_allclose(seen, [1e-2 * factor(e) for e in range(3)], rtol=1e-6)
    assert seen[0] > seen[1] > seen[2] and seen[2] == pytest.approx(1e-3, rel=1e-6)
    assert result.learning_rate == 1e-2  # the base rate, which NaN recovery would halve
