"""The training guard for PyTorch step loops (the CET), with the contract of the Keras guard.

:func:`guarded_steps` runs ``steps`` optimizer steps of one phase. Each step's data must be a
function of ``(seed, phase, step)`` only, so a resumed run sees the same batches. The guard:

* **NaN/Inf**: ``step_fn`` raises :class:`NonFiniteStep` *before* the optimizer updates (a
  non-finite loss or gradient norm), so the weights are intact; the learning rate is halved
  and the step retried, at most ``guard.max_nan_retries`` times in the phase.
* **Out of memory**: a ``RuntimeError`` saying "out of memory" halves the micro-batch (the
  step's batch is then accumulated over more, smaller passes, so the update is the same up to
  summation order) down to ``guard.min_batch_size``, then fails with a ResourceLimitError.
* **SIGINT/SIGTERM**: finish the current step, checkpoint, raise :class:`TrainingInterrupted`
  (the same signal handling as :mod:`reprolab.guard.keras.fit`); a rerun resumes after that step.
* **Checkpoints** every ``checkpoint_every`` steps and at the end of the phase:
  ``<checkpoint_dir>/<phase>.pt``, written atomically, holding whatever ``state()`` returns
  (trainable weights, optimizer, scheduler, RNG states, loop state) plus the guard's own state
  under the format, fingerprint and corrupt-file policy of :mod:`reprolab.guard.common.checkpoint`.
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprolab.core.config import GuardParams
from reprolab.core.errors import PipelineError, ResourceLimitError
from reprolab.guard.common.checkpoint import load_torch, save_torch, text_fingerprint
from reprolab.guard.common.signals import TrainingInterrupted, signal_at, signals_to_flag

log = logging.getLogger(__name__)

__all__ = [
    "GuardState",
    "NonFiniteStep",
    "guarded_steps",
    "is_out_of_memory",
    "make_scheduler",
    "set_lr",
]


class NonFiniteStep(Exception):
    """Raised by a step function before it updates anything: loss or gradients not finite."""


@dataclass
class GuardState:
    """What the guard itself carries across steps (saved in every checkpoint)."""

    next_step: int = 0
    learning_rate: float = 0.0
    micro_batch: int = 0
    nan_retries: int = 0
    events: list[str] = field(default_factory=list)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def checkpoint_file(checkpoint_dir: Path, phase: str) -> Path:
    return Path(checkpoint_dir) / f"{phase}.pt"


def _save(path: Path, key: str, guard_state: GuardState, state: dict[str, Any]) -> None:
    save_torch(path, key, {"guard": guard_state.__dict__, "state": state})


def guarded_steps(
    *,
    phase: str,
    steps: int,
    batch_size: int,
    learning_rate: float,
    step_fn: Callable[[int, int], dict[str, float]],
    set_learning_rate: Callable[[float], None],
    state: Callable[[], dict[str, Any]],
    restore: Callable[[dict[str, Any]], None],
    checkpoint_dir: Path,
    checkpoint_every: int,
    setup: str,
    guard: GuardParams,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    after_step: Callable[[int, float], float | None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> GuardState:
    """Run steps ``next_step .. steps - 1`` of ``phase`` under the guard (module docstring).

    ``step_fn(step, micro_batch)`` does one whole optimizer step and returns its logs;
    ``after_step(step, learning_rate)`` may do more (validation, rollback) before the checkpoint
    decision and return a new learning rate (the guard's from then on, checkpointed);
    ``stop()`` true ends the phase early (it is checkpointed as complete).
    Returns the final :class:`GuardState`; its ``events`` say what the guard did.
    """
    checkpoint_dir = Path(checkpoint_dir)
    path = checkpoint_file(checkpoint_dir, phase)
    key = text_fingerprint(f"{phase}|{steps}|{batch_size}|{learning_rate}|{setup}")
    gs = GuardState(learning_rate=learning_rate, micro_batch=batch_size)

    def event(message: str) -> None:
        gs.events.append(message)
        log.warning("%s: %s", phase, message)

    payload = load_torch(path, key, event)
    if payload is not None:
        events = gs.events
        gs = GuardState(**payload["guard"])
        gs.events = [*gs.events, *events]
        restore(payload["state"])
        if gs.next_step < steps:
            event(f"resumed from {path} at step {gs.next_step + 1}/{steps}")
    set_learning_rate(gs.learning_rate)

    def checkpoint() -> None:
        _save(path, key, gs, state())

    with signals_to_flag(gs.events) as flag:
        while gs.next_step < steps:
            step = gs.next_step
            signal_at(f"{phase}:{step}")  # tests only: REPROLAB_SIGNAL_AT
            try:
                logs = step_fn(step, gs.micro_batch)
            except NonFiniteStep as exc:
                if gs.nan_retries >= guard.max_nan_retries:
                    raise PipelineError(
                        f"{phase}: step {step + 1}/{steps} not finite after "
                        f"{gs.nan_retries} learning-rate halvings ({exc}); "
                        "lower the learning rate or check the data"
                    ) from None
                gs.nan_retries += 1
                gs.learning_rate /= 2.0
                set_learning_rate(gs.learning_rate)
                event(f"step {step + 1}: {exc}; learning rate halved to {gs.learning_rate:g}")
                continue
            except (RuntimeError, MemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
                smaller = gs.micro_batch // 2
                if smaller < max(1, guard.min_batch_size):
                    raise ResourceLimitError(
                        f"{phase}: out of memory at micro-batch {gs.micro_batch} "
                        f"(guard.min_batch_size = {guard.min_batch_size}); use a smaller model "
                        "or batch"
                    ) from None
                gs.micro_batch = smaller
                event(f"step {step + 1}: out of memory; micro-batch halved to {smaller}")
                continue
            if not all(math.isfinite(v) for v in logs.values()):
                raise PipelineError(f"{phase}: step {step + 1} logged a non-finite value {logs}")
            gs.next_step = step + 1
            if on_step is not None:
                on_step(step, {**logs, "learning_rate": gs.learning_rate})
            if after_step is not None:
                new_lr = after_step(step, gs.learning_rate)
                if new_lr is not None:
                    gs.learning_rate = new_lr
                    set_learning_rate(new_lr)
            if stop is not None and stop():
                event(f"stopped early after step {gs.next_step}/{steps}")
                gs.next_step = steps
            if gs.next_step == steps or gs.next_step % checkpoint_every == 0:
                checkpoint()
            if flag.signum is not None:
                if gs.next_step % checkpoint_every and gs.next_step != steps:
                    checkpoint()
                raise TrainingInterrupted(
                    f"{phase}: interrupted ({signal.Signals(flag.signum).name}) after step "
                    f"{gs.next_step}/{steps}; checkpoint saved to {path}, rerun to resume",
                    epoch=step,
                    signum=flag.signum,
                    checkpoint_dir=checkpoint_dir,
                )
    if payload is None and steps == 0:
        checkpoint()
    return gs


def make_scheduler(optimizer: Any, factor: Callable[[int], float]) -> Any:
    """A ``LambdaLR``: the learning rate of step k is the base rate times ``factor(k)``; it
    advances once per optimizer step and its ``state_dict`` goes into every checkpoint."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def set_lr(optimizer: Any, learning_rate: float, scheduler: Any = None) -> None:
    """Set the learning rate that the guard and rollbacks change: every parameter group's
    rate, or, under a ``scheduler``, the base rate its schedule multiplies from now on."""
    if scheduler is not None:
        scheduler.base_lrs = [learning_rate] * len(optimizer.param_groups)
        learning_rate *= scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
