"""Signals at the stage level: one line and exit code 128 + signal, whenever they arrive.

From a stage's first line SIGINT/SIGTERM raise :class:`StageInterrupted`
(:func:`install_stage_handlers`); outputs are written atomically, so nothing half-written is
left, and a rerun starts the stage again (training from its last checkpoint). During training
the guards' handlers (:mod:`reprolab.guard.common.signals`) take over. :func:`die_with_parent`: a
stage whose parent (``dvc``) dies gets SIGTERM instead of running on orphaned.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any


class StageInterrupted(KeyboardInterrupt):
    """A signal outside the guarded training loops (imports, loading, saving): the stage stops
    where it is. A KeyboardInterrupt, so no library's ``except Exception`` swallows it."""

    def __init__(self, signum: int, *, again: bool = False) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.again = again  # a second signal while a guard was finishing its step
        self.exit_code = 128 + signum


# The signal that asked this stage to stop, once one has. A SIGTERM after it is the same
# request, never "stop at once": a dying parent sends PDEATHSIG once per thread it had (the
# kernel passes the orphan from each exiting thread to the next and signals it each time, as
# many times as it had threads, spread over however long they take to exit), and process
# managers repeat SIGTERM before their SIGKILL. Only a second SIGINT (Ctrl-C again) insists.
_stop_requested: int | None = None


def reset_stop_request() -> None:
    """Forget any stop request: a stage (or a guarded loop) starts with none."""
    global _stop_requested
    _stop_requested = None


def is_repeat(signum: int) -> bool:
    """Whether ``signum`` adds nothing to a stop already requested (a SIGTERM after any
    signal); otherwise the first signal is recorded as the request."""
    global _stop_requested
    if _stop_requested is None:
        _stop_requested = signum
        return False
    return signum == signal.SIGTERM


def _raise_interrupted(signum: int, _frame: Any) -> None:
    if not is_repeat(signum):  # a repeat would raise again inside the first one's handling
        raise StageInterrupted(signum)


def install_stage_handlers() -> None:
    """SIGINT/SIGTERM raise :class:`StageInterrupted` from here on.

    Without this a SIGTERM before a guard installs its own handler (while TensorFlow or
    torch import, while data loads) killed the process with no message. The guards'
    :func:`signals_to_flag` take over during training and put this handler back after.
    """
    reset_stop_request()
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, _raise_interrupted)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; True if armed.

    A SIGTERM to ``dvc`` alone killed DVC and left the stage running orphaned, still writing
    outputs. With this the stage gets SIGTERM too and stops through the guarded path
    (checkpoint, one line). It needs the stage to be DVC's direct child: DVC runs
    ``$SHELL -c cmd`` (``/bin/sh`` when ``$SHELL`` is unset), and dash forks for a plain
    command, so every ``cmd`` in dvc.yaml starts with ``exec``. A no-op elsewhere than Linux.
    """
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
    # The parent may have died before prctl: then nothing will ever send the signal.
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True
