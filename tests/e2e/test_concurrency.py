"""Two `dvc repro` at once in one repository: the second stops with DVC's lock error at
once (it does not wait for the first, nor run the stage twice), and the first finishes
with its outputs intact and the pipeline up to date. ``--wait-for-lock`` waits for the
repository lock instead of failing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zc.lockfile

from tests.e2e.conftest import make_clone, run

BIN = Path(sys.executable).parent

# Stands in for `python` on PATH: tells the test that the stage command has started, then
# holds it there until the test says go, so the second run meets a first one for sure.
_PARKED_PYTHON = """#!/bin/sh
: > "$REPROLAB_TEST_STARTED"
while [ ! -e "$REPROLAB_TEST_GO" ]; do sleep 0.05; done
exec "{python}" "$@"
"""


def _wait_for(path: Path, proc: subprocess.Popen[str], limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first dvc repro never started its stage"
        time.sleep(0.05)


def _leftovers(repo: Path) -> list[str]:
    """Temporary siblings that an interrupted or clashing atomic write would leave."""
    return sorted(p.name for d in ("data/raw", "data/truth") for p in (repo / d).glob(".*.tmp"))


@pytest.mark.e2e
@pytest.mark.slow
def test_second_dvc_repro_fails_at_once_and_corrupts_nothing(tmp_path: Path) -> None:
    repo = make_clone(tmp_path / "repo")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "python").write_text(_PARKED_PYTHON.format(python=BIN / "python"))
    (shim / "python").chmod(0o755)
    started, go = tmp_path / "started", tmp_path / "go"
    env = {
        **os.environ,
        "PATH": f"{shim}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "REPROLAB_TEST_STARTED": str(started),
        "REPROLAB_TEST_GO": str(go),
    }
    env.pop("PYTHONPATH", None)
    first = subprocess.Popen(
        [str(BIN / "dvc"), "repro", "generate@markets"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(started, first)
        second = run(["dvc", "repro", "generate@markets"], repo, check=False, timeout=300)
        # "At once": it returned while the first is still held inside its stage command.
        assert first.poll() is None
        assert second.returncode != 0
        line = second.stderr.strip().splitlines()[0]
        # the first stage DVC meets is check_params (its marker is a dep of every stage)
        assert line.startswith("ERROR: failed to reproduce 'check_params': ")
        assert "is busy, it is being blocked by:" in line
        go.touch()
        out, _ = first.communicate(timeout=600)
    finally:
        go.touch()
        if first.poll() is None:
            first.kill()
            first.wait(timeout=60)
    assert first.returncode == 0, out

    status = run(["dvc", "status", "generate@markets"], repo)
    assert "up to date" in status.stdout
    assert (repo / "data/raw/markets").is_dir() and any((repo / "data/raw/markets").iterdir())
    assert (repo / "data/truth/markets").is_dir()
    assert _leftovers(repo) == []

    # Between stages DVC holds the repository lock itself: a second run retries for about
    # three seconds, then fails; with --wait-for-lock it waits for the lock instead.
    lock = zc.lockfile.LockFile(str(repo / ".dvc/tmp/lock"))
    try:
        busy = run(["dvc", "repro", "generate@markets"], repo, check=False, timeout=300)
        assert busy.returncode != 0
        assert busy.stderr.strip().splitlines()[0].startswith("ERROR: Unable to acquire lock.")
        waiter = subprocess.Popen(
            [str(BIN / "dvc"), "--wait-for-lock", "repro", "generate@markets"],
            cwd=repo,
            env={**env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(5)  # give it time to meet the lock (if it is slower, it still passes)
        assert waiter.poll() is None, waiter.communicate()
    finally:
        lock.close()
    out, _ = waiter.communicate(timeout=300)
    assert waiter.returncode == 0, out
    assert "didn't change" in out
