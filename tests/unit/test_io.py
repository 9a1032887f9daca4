"""Atomic writes survive SIGKILL; locked updates from many processes lose nothing."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reprolab.core.errors import DataQualityError, DependencyError
from reprolab.core.io import atomic_dir, locked_update, read_json, write_json

ROOT = Path(__file__).resolve().parents[2]

_SLOW_WRITER = """
import sys, time
from reprolab.core.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "w") as fh:
        fh.write('{"version": "new", "payload": "')
        fh.flush()
        print("writing", flush=True)
        while True:
            fh.write("x" * 1024)
            fh.flush()
            time.sleep(0.01)
"""

_SLOW_DIR_WRITER = """
import sys, time
from reprolab.core.io import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "a.txt").write_text("new")
    print("writing", flush=True)
    time.sleep(60)
"""


def _kill_mid_write(script: str, target: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_write_leaves_previous_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"version": "old"})
    _kill_mid_write(_SLOW_WRITER, target)
    assert read_json(target) == {"version": "old"}


def test_sigkill_mid_directory_write_leaves_previous_directory(tmp_path: Path) -> None:
    target = tmp_path / "outdir"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    _kill_mid_write(_SLOW_DIR_WRITER, target)
    assert (target / "a.txt").read_text() == "old"
    # The next run clears the interrupted run's leftovers and replaces the output.
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("newer")
    assert (target / "a.txt").read_text() == "newer"
    assert [p.name for p in tmp_path.iterdir()] == ["outdir"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})
    with pytest.raises(ValueError):
        write_json(target, {"v": float("nan")})  # NaN is not JSON
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_read_json_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DependencyError, match=r"absent\.json: file not found"):
        read_json(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataQualityError, match=r"bad\.json: not valid JSON"):
        read_json(tmp_path / "bad.json")


def _increment(path: str, worker: int, n: int) -> None:
    def bump(state: dict | None) -> dict:
        state = state or {"count": 0, "by_worker": {}}
        state["count"] += 1
        key = str(worker)
        state["by_worker"][key] = state["by_worker"].get(key, 0) + 1
        return state

    for _ in range(n):
        locked_update(path, bump)


def _reader(path: str, stop: mp.Event, failures: mp.Value) -> None:  # type: ignore[type-arg]
    while not stop.is_set():
        try:
            with open(path) as fh:
                json.load(fh)
        except FileNotFoundError:
            pass
        except json.JSONDecodeError:
            with failures.get_lock():
                failures.value += 1


def test_concurrent_locked_updates_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "registry.json")
    workers, updates = 8, 100
    ctx = mp.get_context("spawn")
    stop, failures = ctx.Event(), ctx.Value("i", 0)
    reader = ctx.Process(target=_reader, args=(path, stop, failures))
    reader.start()
    procs = [ctx.Process(target=_increment, args=(path, w, updates)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    stop.set()
    reader.join(timeout=30)
    state = read_json(path)
    assert state["count"] == workers * updates
    assert state["by_worker"] == {str(w): updates for w in range(workers)}
    assert failures.value == 0


def test_outputs_get_the_usual_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
