"""Signals: one line, exit code 128 + signal, and a resumable state, whenever they arrive.

* During training SIGINT/SIGTERM set a flag that the guards act on between steps: every
  guard (Keras, L-BFGS, torch, DDP) stops at the next batch or step end, saves its checkpoint
  and raises :class:`TrainingInterrupted`, so a rerun resumes where it stopped.
* Outside the loops the stage-level handlers of :mod:`reprolab.core.signals` raise
  :class:`~reprolab.core.signals.StageInterrupted`; a second SIGINT during a guarded step
  raises it too (a SIGTERM after the first signal is the same request: see
  :func:`~reprolab.core.signals.is_repeat`).
* :func:`signal_at`: the fault-injection hook the interruption tests use.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reprolab.core.errors import PipelineError
from reprolab.core.signals import StageInterrupted, is_repeat, reset_stop_request


class TrainingInterrupted(PipelineError):
    """SIGINT/SIGTERM stopped training; a checkpoint was saved and a rerun resumes from it."""

    kind = "interrupted"

    # Keyword defaults: exceptions unpickle as cls(message) (process pools send them back).
    def __init__(
        self,
        message: str,
        *,
        epoch: int = -1,
        signum: int = signal.SIGINT,
        checkpoint_dir: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.signum = signum
        self.checkpoint_dir = checkpoint_dir
        self.exit_code = 128 + signum  # the shell's convention for "killed by signal n"


class Flag:
    """The signal received, if any (set by the handler, read by the guard)."""

    signum: int | None = None


@contextlib.contextmanager
def signals_to_flag(events: list[str]) -> Iterator[Flag]:
    """SIGINT/SIGTERM only set a flag (acted on at the next batch end); old handlers return."""
    flag = Flag()
    if threading.current_thread() is not threading.main_thread():
        events.append("signal handlers not installed: training runs outside the main thread")
        yield flag
        return

    def handler(signum: int, _frame: Any) -> None:
        if is_repeat(signum):  # the same request again (a SIGTERM once a stop is underway)
            return
        if flag.signum is not None:  # a second Ctrl-C: the user insists, stop at once
            raise StageInterrupted(signum, again=True)
        flag.signum = signum  # no logging here: the handler may run inside a logging call

    reset_stop_request()  # a loop starts with none: an earlier request would have ended it
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


# --------------------------------------------------------------------------- fault injection
SIGNAL_AT = "REPROLAB_SIGNAL_AT"


def signal_at(point: str) -> None:
    """Test hook: signal this process when training reaches ``point``.

    ``REPROLAB_SIGNAL_AT="<point>[=<SIGNAME>][,...]"`` (unset in normal runs) names points
    such as ``supervised_0:1`` (a Keras guard at the start of epoch index 1 of the run whose
    checkpoint directory is ``supervised_0``), ``sft:2`` (the torch guard before step index 2
    of phase ``sft``) or ``polish:3`` (the L-BFGS polish at iteration 3); SIGTERM by default.
    ``=SIGKILL`` kills the whole process group (``dvc repro`` and its stage), as a ``kill -9``
    of the group would; ``=PARENT`` sends SIGTERM to the parent alone (``kill <dvc pid>``).
    Lets tests interrupt every phase deterministically instead of racing with sleeps; it
    reads nothing else and changes no output.
    """
    wanted = os.environ.get(SIGNAL_AT)
    if not wanted:
        return
    for entry in wanted.split(","):
        where, _, name = entry.strip().partition("=")
        if where != point:
            continue
        if name == "PARENT":
            os.kill(os.getppid(), signal.SIGTERM)
            return
        sig = signal.Signals[name or "SIGTERM"]
        if sig == signal.SIGKILL:
            os.killpg(os.getpgid(0), sig)
        os.kill(os.getpid(), sig)
