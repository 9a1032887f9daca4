"""Signals during training: SIGINT/SIGTERM set a flag that the guards act on between steps.

Every guard (Keras, L-BFGS, torch, DDP) stops at the next batch or step end, saves its
checkpoint and raises :class:`TrainingInterrupted`, so a rerun resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from reprolab.core.errors import PipelineError


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
        if flag.signum is not None:  # a second signal: the user insists, stop at once
            raise KeyboardInterrupt
        flag.signum = signum  # no logging here: the handler may run inside a logging call

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
