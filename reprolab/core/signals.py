"""Signals at the stage level: one line and exit code 128 + signal, whenever they arrive.

From a stage's first line SIGINT/SIGTERM raise :class:`StageInterrupted`
(:func:`install_stage_handlers`); outputs are written atomically, so nothing half-written is
left, and a rerun starts the stage again (training from its last checkpoint). During training
the guards' handlers (:mod:`reprolab.guard.signals`) take over. :func:`die_with_parent`: a
stage whose parent (``dvc``) dies gets SIGTERM instead of running on orphaned.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any


class StageInterrupted(KeyboardInterrupt):
    """A signal outside the guarded training loops (imports, loading, saving): the stage stops
    where it is. A KeyboardInterrupt, so no library's ``except Exception`` swallows it."""

    def __init__(self, signum: int, *, again: bool = False) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.again = again  # a second signal while a guard was finishing its step
        self.exit_code = 128 + signum


# A parent's death sends PDEATHSIG once per thread of the parent: the kernel passes the
# orphan from each exiting thread to the next and signals it each time (a killed parent with
# 8 threads delivered 1-4 SIGTERMs within milliseconds). So once :func:`die_with_parent` has
# armed a signal, repeats of it this close together are one request; anything else (a second
# Ctrl-C) still means "stop at once".
REPEAT_WINDOW_S = 1.0
_pdeath_signal: int | None = None
_first_seen: dict[int, float] = {}


def is_repeat(signum: int) -> bool:
    """Whether ``signum`` is the parent-death signal again, less than REPEAT_WINDOW_S after
    the first of its burst; otherwise it is recorded as a new request."""
    now = time.monotonic()
    first = _first_seen.get(signum)
    if signum == _pdeath_signal and first is not None and now - first < REPEAT_WINDOW_S:
        return True
    _first_seen[signum] = now
    return False


def _raise_interrupted(signum: int, _frame: Any) -> None:
    if not is_repeat(signum):  # a repeat would raise again inside the first one's handling
        raise StageInterrupted(signum)


def install_stage_handlers() -> None:
    """SIGINT/SIGTERM raise :class:`StageInterrupted` from here on.

    Without this a SIGTERM before a guard installs its own handler (while TensorFlow or
    torch import, while data loads) killed the process with no message. The guards'
    :func:`signals_to_flag` take over during training and put this handler back after.
    """
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, _raise_interrupted)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; True if armed.

    ``dvc repro`` runs a stage as its direct child (``$SHELL -c cmd`` execs the one command),
    and a SIGTERM to ``dvc`` alone killed DVC and left the stage running orphaned, still
    writing outputs. With this the stage gets SIGTERM too and stops through the guarded path
    (checkpoint, one line). A no-op elsewhere than Linux.
    """
    global _pdeath_signal
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    _pdeath_signal = int(sig)
    # The parent may have died before prctl: then nothing will ever send the signal.
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True
