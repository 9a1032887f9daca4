"""Signals outside the training loops: before training starts, and when the parent dies.

A signal at any point ends a stage with one line and exit code 128 + signal: these tests
send real signals to real processes (``python -m stages.train cet``; a stand-in for
``dvc repro`` that is killed while its stage runs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reprolab.core.signals import StageInterrupted
from reprolab.core.stage import run_stage
from reprolab.guard.common.signals import signal_at, signals_to_flag
from tests import tiny

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("REPROLAB_SIGNAL_AT", None)
    return env


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (the SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_before_training_starts_ends_with_one_line(tmp_path: Path) -> None:
    """SIGTERM while train@cet still imports torch and loads params: it used to die silently
    (the default action, exit -15) because no guard had installed a handler yet."""
    tiny.write_params(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.train", "cet"],
        cwd=tmp_path,
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # As soon as the stage catches SIGTERM (its first lines), long before its loop.
        while proc.poll() is None and not _catches(proc.pid, signal.SIGTERM):
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == [
        "error: train@cet: interrupted (SIGTERM) outside a training step; run `dvc repro` "
        "again to resume from the last checkpoint"
    ]


# A stand-in for `dvc repro` and its stage: the stage runs through `entry` (as stages/*.py
# do) with a step whose work is a guarded loop; the parent runs it as DVC does with $SHELL
# unset (`/bin/sh -c "exec ..."`, dvc.yaml's form) and is then killed. Like dvc it has
# threads: the kernel re-sends PDEATHSIG each time the orphan passes from an exiting thread
# of its parent to the next (8 busy threads: up to 9 SIGTERMs, early or late), and the stage
# must still take them as one request and exit 143. The outer script is a child subreaper,
# so the orphan comes back to it and its exit code can be read.
ORPHAN = textwrap.dedent(
    """
    import ctypes, os, shlex, signal, subprocess, sys, time
    ready, log = sys.argv[1], sys.argv[2]
    stage = (
        "import sys, time\\n"
        "import reprolab.core.stage as st\\n"
        "from pathlib import Path\\n"
        "from reprolab.guard.common.signals import TrainingInterrupted, signals_to_flag\\n"
        "def guarded_loop(step, item, params, res):\\n"
        "    with signals_to_flag([]) as flag:\\n"
        f"        Path({ready!r}).write_text('ready')\\n"
        "        for _ in range(600):\\n"
        "            if flag.signum is not None:\\n"
        "                raise TrainingInterrupted('stopped at step 3 (SIGTERM); checkpoint"
        " saved', signum=flag.signum)\\n"
        "            time.sleep(0.05)\\n"
        "st.dispatch = guarded_loop\\n"
        "st.entry('generate')\\n"
    )
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    parent = subprocess.Popen([
        sys.executable, "-c",
        "import subprocess, sys, threading\\n"
        "def busy():\\n"
        "    while True: sum(range(10000))\\n"
        "for _ in range(8): threading.Thread(target=busy, daemon=True).start()\\n"
        "subprocess.Popen(['/bin/sh', '-c', sys.argv[1]], stderr=open(sys.argv[2], 'w')).wait()",
        f"exec {sys.executable} -c {shlex.quote(stage)} markets", log,
    ])
    while not os.path.exists(ready):
        assert parent.poll() is None, open(log).read()
        time.sleep(0.01)
    parent.send_signal(signal.SIGTERM)  # `kill <dvc pid>`: the parent alone
    parent.wait()
    start = time.monotonic()
    pid, status = os.wait()  # the orphaned stage, reparented here
    print(os.waitstatus_to_exitcode(status), round(time.monotonic() - start, 1))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_sigterm_to_the_parent_alone_stops_the_stage_with_one_line(tmp_path: Path) -> None:
    """`kill <dvc pid>` used to leave the stage running orphaned; now it gets SIGTERM when
    its parent dies and stops through the guarded path: one line, exit 143."""
    tiny.write_params(tmp_path)
    ready, log = tmp_path / "ready", tmp_path / "stage.err"
    proc = subprocess.run(
        [sys.executable, "-c", ORPHAN, str(ready), str(log)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    code, seconds = proc.stdout.split()
    assert int(code) == 128 + signal.SIGTERM, log.read_text()
    assert float(seconds) < 10  # stopped at once, not after its 30 s of work
    assert log.read_text().strip().splitlines() == [
        "error: generate@markets: interrupted: stopped at step 3 (SIGTERM); checkpoint saved"
    ]


@pytest.mark.slow
def test_run_stage_turns_a_signal_outside_the_guards_into_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process: a signal during loading (no guard) is one line and 128 + signum; a
    second signal during a guarded loop too; the caller's handlers come back."""
    tiny.write_params(tmp_path)
    monkeypatch.chdir(tmp_path)

    def callers(signum: int, _frame: object) -> None:  # reached only if run_stage has none
        raise AssertionError(f"run_stage installed no handler for signal {signum}")

    before = signal.signal(signal.SIGTERM, callers)
    try:

        def loading(item: str, params: object, res: object) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # never reached: the handler raises first

        assert run_stage("features", loading, ("options",), ["options"]) == 143
        assert capsys.readouterr().err.splitlines() == [
            "error: features@options: interrupted (SIGTERM); nothing was recorded; run `dvc repro`"
            " again to redo the stage"
        ]
        assert signal.getsignal(signal.SIGTERM) is callers

        def insisting(item: str, params: object, res: object) -> None:
            with signals_to_flag([]):
                os.kill(os.getpid(), signal.SIGINT)  # flagged: the guard would stop at step end
                os.kill(os.getpid(), signal.SIGINT)  # the user insists: stop now
                time.sleep(5)

        assert run_stage("train", insisting, ("pinn",), ["pinn"]) == 130
        assert capsys.readouterr().err.splitlines() == [
            "error: train@pinn: stopped at once by a second SIGINT (the current step was not"
            " saved); run `dvc repro` again to resume from the last checkpoint"
        ]
        assert signal.getsignal(signal.SIGTERM) is callers
    finally:
        signal.signal(signal.SIGTERM, before)


def test_signal_at_sends_only_at_its_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPROLAB_SIGNAL_AT", "sft:1, polish:2=SIGINT")
    signal_at("sft:0")
    signal_at("supervised_0:1")
    with pytest.raises(StageInterrupted) as info, signals_to_flag([]) as flag:
        signal_at("sft:1")
        assert flag.signum == signal.SIGTERM
        signal_at("polish:2")  # a second signal inside a guard: stop at once
    assert info.value.signum == signal.SIGINT and info.value.exit_code == 130


def test_a_repeated_sigterm_is_one_request_and_a_second_ctrl_c_insists() -> None:
    """A dying parent re-sends PDEATHSIG once per exiting thread, at any pace: however many
    SIGTERMs follow the first signal, they never read as "the user insists"; a second SIGINT
    (Ctrl-C again) does, whatever came first."""
    with signals_to_flag([]) as flag:
        for _ in range(4):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)  # spread out, as on a loaded machine: still the same request
        assert flag.signum == signal.SIGTERM
    with signals_to_flag([]) as flag:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.signum == signal.SIGINT
    for first in (signal.SIGINT, signal.SIGTERM):
        with pytest.raises(StageInterrupted) as info, signals_to_flag([]) as flag:
            os.kill(os.getpid(), first)
            os.kill(os.getpid(), signal.SIGINT)
        assert info.value.again and info.value.signum == signal.SIGINT


def test_a_stage_process_keeps_its_exit_code_when_sigterm_comes_again_after_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a stage's own process (``entry``) SIGTERM is ignored once the exit code is decided:
    a late repeat of the parent-death SIGTERM, after the stage printed its line, no longer
    kills the process by signal (-15 instead of 143)."""
    tiny.write_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def loading(item: str, params: object, res: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # never reached: the handler raises first

    try:
        code = run_stage("features", loading, ("options",), ["options"], restore_handlers=False)
        assert code == 143
        # checked first, so that a regression fails here instead of killing pytest below
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)  # the parent's next thread exits: ignored
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    assert capsys.readouterr().err.splitlines() == [
        "error: features@options: interrupted (SIGTERM); nothing was recorded; run `dvc repro`"
        " again to redo the stage"
    ]
