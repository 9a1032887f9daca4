"""Outputs survive crashes, read-only directories and full disks; locks honour timeouts.

- ``atomic_dir``: a writer SIGKILLed at each step of the swap leaves a complete directory
  (the old one or the new one), never none.
- A read-only directory or a full file system is one OutputError line naming the output,
  at the start of a stage (preflight) or at write time, and the previous output stays.
  Real ones (a small tmpfs, remounted read-only) where this process may mount; otherwise
  ``chmod`` (not root) or those tests skip, and the simulated ones below still run.
- ``locked_update`` gives up after its ``timeout`` with a LockTimeoutError naming the lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from reprolab.core import io, preflight
from reprolab.core.config import to_dict
from reprolab.core.errors import LockTimeoutError, OutputError
from reprolab.core.io import (
    atomic_dir,
    atomic_write_bytes,
    locked_update,
    read_json,
    write_json,
)
from reprolab.core.preflight import check_outputs, stage_outputs
from reprolab.core.stage import run_stage
from tests.tiny import repo_params

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _version(d: Path) -> str | None:
    """ "old" or "new" where ``d`` is a complete output directory (both files, one version)."""
    try:
        a, b = (d / "a.txt").read_text(), (d / "b.txt").read_text()
    except OSError:
        return None
    return a if a == b else None


def _write_version(d: Path, version: str) -> None:
    (d / "a.txt").write_text(version)
    (d / "b.txt").write_text(version)


# Swaps "new" into argv[1] and SIGKILLs itself just before the argv[3]-th file system step
# of the swap (a rename, an exchange or a delete); argv[2] "aside" forces the fallback.
_SWAP_KILLER = """
import os, shutil, signal, sys
from pathlib import Path
from reprolab.core import io

target, strategy, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
state = {"armed": False, "steps": 0}

def step(fn):
    def wrapped(*args, **kwargs):
        if state["armed"]:
            state["steps"] += 1
            if state["steps"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapped

os.rename, os.replace, shutil.rmtree = step(os.rename), step(os.replace), step(shutil.rmtree)
if strategy == "aside":
    io._exchange = lambda a, b: False
elif hasattr(io, "_exchange"):
    io._exchange = step(io._exchange)
with io.atomic_dir(target) as tmp:
    (tmp / "a.txt").write_text("new")
    (tmp / "b.txt").write_text("new")
    state["armed"] = True
"""


def _exchange_works(tmp_path: Path) -> bool:
    a, b = tmp_path / "probe_a", tmp_path / "probe_b"
    a.mkdir()
    b.mkdir()
    try:
        return io._exchange(a, b)
    finally:
        a.rmdir()
        b.rmdir()


@pytest.mark.parametrize("strategy", ["exchange", "aside"])
def test_killed_directory_swap_never_leaves_the_output_missing(
    tmp_path: Path, strategy: str
) -> None:
    if strategy == "exchange" and not _exchange_works(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    target = tmp_path / "out" / "markets"
    for kill_at in (1, 2, 3, 4):  # before each step of the swap, and not at all
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        with atomic_dir(target) as tmp:
            _write_version(tmp, "old")
        proc = subprocess.run(
            [sys.executable, "-c", _SWAP_KILLER, str(target), strategy, str(kill_at)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode in (0, -9), proc.stderr
        now = _version(target)
        if strategy == "exchange":
            # The whole point: at the instant of the kill the output itself is complete.
            assert now in ("old", "new"), f"killed before step {kill_at}: no complete output"
        elif now is None:
            # The fallback's one window: the complete old output waits beside it.
            (aside,) = target.parent.glob(".markets.old.*.tmp")
            assert _version(aside) == "old"
        # The next run (failing here) restores or clears whatever the kill left.
        with pytest.raises(RuntimeError), atomic_dir(target):
            raise RuntimeError("the next run fails too")
        assert _version(target) in ("old", "new"), f"after a kill before step {kill_at}"
        assert [p.name for p in target.parent.iterdir()] == ["markets"]
        if proc.returncode == 0:
            assert now == "new"


def test_directory_swap_replaces_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "d"
    for version in ("old", "new"):
        with atomic_dir(target) as tmp:
            _write_version(tmp, version)
    assert _version(target) == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


# --- read-only directories and full file systems ----------------------------------------


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small real file system at ``where`` (skips where this process may not mount)."""
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here; the simulated cases still run")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root); the simulated cases still run")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _make_read_only(d: Path) -> Callable[[], None]:
    """Make ``d`` refuse writes for real; returns the undo."""
    if os.geteuid() != 0:
        d.chmod(0o555)
        return lambda: d.chmod(0o755)
    proc = subprocess.run(["mount", "-o", "remount,ro", str(d)], capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.skip("cannot remount read-only here; the simulated cases still run")
    return lambda: None


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real directory on its own small file system as root, a plain one otherwise."""
    if os.geteuid() != 0:
        d = tmp_path / "fs"
        d.mkdir()
        yield d
        return
    with _tmpfs(tmp_path / "fs", "1m") as d:
        yield d


def test_read_only_directory_is_one_line_and_keeps_previous_outputs(small_fs: Path) -> None:
    write_json(small_fs / "out.json", {"v": "old"})
    with atomic_dir(small_fs / "table") as tmp:
        _write_version(tmp, "old")
    undo = _make_read_only(small_fs)
    try:
        with pytest.raises(OutputError, match=r"out\.json: (read-only|permission denied)"):
            write_json(small_fs / "out.json", {"v": "new"})
        with (
            pytest.raises(OutputError, match=r"table: (read-only|permission denied)") as err,
            atomic_dir(small_fs / "table") as tmp,
        ):
            _write_version(tmp, "new")
        assert "\n" not in str(err.value)
        # Preflight says the same before any work.
        with pytest.raises(OutputError, match=r"table: (read-only|permission denied)"):
            check_outputs([small_fs / "table"], min_free=0)
    finally:
        undo()
    assert read_json(small_fs / "out.json") == {"v": "old"}
    assert _version(small_fs / "table") == "old"


def test_full_file_system_is_one_line_and_keeps_previous_outputs(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "fs", "256k") as fs:
        write_json(fs / "out.json", {"v": "old"})
        with atomic_dir(fs / "table") as tmp:
            _write_version(tmp, "old")
        with pytest.raises(OutputError, match=r"out\.json: no space left"):
            atomic_write_bytes(fs / "out.json", b"x" * 2**20)
        with (
            pytest.raises(OutputError, match=r"table: no space left"),
            atomic_dir(fs / "table") as tmp,
        ):
            (tmp / "a.txt").write_bytes(b"x" * 2**20)
        with pytest.raises(OutputError, match=r"only 0 MiB free.*under the 64 MiB"):
            check_outputs([fs / "table"])
        assert read_json(fs / "out.json") == {"v": "old"}
        assert _version(fs / "table") == "old"
        assert sorted(p.name for p in fs.iterdir()) == ["out.json", "table"]


def _enospc(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_simulated_no_space_at_write_time_keeps_previous_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_json(tmp_path / "out.json", {"v": "old"})
    with atomic_dir(tmp_path / "table") as tmp:
        _write_version(tmp, "old")
    # The file system may report a full disk only when the data is flushed (fsync).
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", _enospc)
        with pytest.raises(OutputError, match=r"out\.json: no space left") as err:
            write_json(tmp_path / "out.json", {"v": "new"})
        with (
            pytest.raises(OutputError, match=r"table: no space left"),
            atomic_dir(tmp_path / "table") as tmp,
        ):
            _write_version(tmp, "new")
    assert str(err.value) == (
        f"{tmp_path / 'out.json'}: no space left on its file system (or over quota); "
        "free some space there (e.g. `dvc gc -w`, old checkpoints) and rerun"
    )
    assert read_json(tmp_path / "out.json") == {"v": "old"}
    assert _version(tmp_path / "table") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "table"]


def test_simulated_read_only_directory_names_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def erofs(*_args: object, dir: str | None = None, **_kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), f"{dir}/.x.tmp")

    write_json(tmp_path / "out.json", {"v": "old"})
    monkeypatch.setattr(tempfile, "mkstemp", erofs)
    monkeypatch.setattr(tempfile, "mkdtemp", erofs)
    with pytest.raises(OutputError, match=r"out\.json: read-only file system; run from a"):
        write_json(tmp_path / "out.json", {"v": "new"})
    with (
        pytest.raises(OutputError, match=r"table: read-only file system"),
        atomic_dir(tmp_path / "table"),
    ):
        pass
    monkeypatch.undo()
    assert read_json(tmp_path / "out.json") == {"v": "old"}


def test_unrelated_os_errors_are_not_blamed_on_the_output(tmp_path: Path) -> None:
    # An unreadable *input* elsewhere is not "cannot write output".
    with pytest.raises(PermissionError), atomic_dir(tmp_path / "table"):
        raise PermissionError(errno.EACCES, "Permission denied", "/elsewhere/input.parquet")


# --- preflight and the stage's one line --------------------------------------------------


def test_stage_outputs_come_from_dvc_yaml() -> None:
    outs = stage_outputs("generate@markets", ROOT / "dvc.yaml")
    assert Path("data/raw/markets") in outs and Path("data/truth/markets") in outs
    assert Path("models/pinn") in stage_outputs("train@pinn", ROOT / "dvc.yaml")
    assert stage_outputs("no_such_stage", ROOT / "dvc.yaml") == []


@pytest.fixture
def stage_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with valid params and the project's dvc.yaml."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(to_dict(repo_params())))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run_generate(main: Callable[..., None]) -> int:
    return run_stage("generate", main, ("markets",), ["markets"])


def test_stage_without_space_stops_before_work_with_one_line(
    stage_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = []
    usage = shutil.disk_usage(stage_dir)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _p: usage._replace(free=10 * 2**20))
    assert _run_generate(lambda *_: ran.append(1)) == OutputError.exit_code
    assert ran == []
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        "error: generate@markets: cannot write output: data/raw/markets: only 10 MiB free"
    )


def test_stage_hitting_a_full_disk_is_one_line_and_keeps_previous_output(
    stage_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with atomic_dir("data/raw/markets") as tmp:
        _write_version(tmp, "old")

    def fills_the_disk(*_: object) -> None:
        with atomic_dir("data/raw/markets") as tmp:
            (tmp / "a.txt").write_text("new")
            _enospc()

    assert _run_generate(fills_the_disk) == OutputError.exit_code
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: generate@markets: cannot write output: data/raw/markets: no space left on its "
        "file system (or over quota); free some space there (e.g. `dvc gc -w`, old "
        "checkpoints) and rerun"
    ]
    assert _version(stage_dir / "data/raw/markets") == "old"

    def stray(*_: object) -> None:  # a write that bypasses the atomic helpers
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "metrics/train/x/live/log")

    assert _run_generate(stray) == OutputError.exit_code
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: generate@markets: cannot write output: metrics/train/x/live/")


# --- locks -------------------------------------------------------------------------------

_HOLDER = """
import sys, time, portalocker
with portalocker.Lock(sys.argv[1], mode="a", flags=portalocker.LOCK_EX):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_locked_update_gives_up_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    lock = tmp_path / "registry.json.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock), "15"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with pytest.raises(LockTimeoutError) as err:
            locked_update(path, lambda s: {"n": 1}, timeout=0.5)
        # Generous bound: the point is "about 0.5 s, not until the holder lets go (15 s)".
        assert time.monotonic() - start < 5
        assert str(err.value) == (
            f"{lock}: another process still held this lock after 0.5 s; "
            "wait for it to finish (or raise the timeout) and rerun"
        )
        assert not path.exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert locked_update(path, lambda s: {"n": 1}, timeout=5) == {"n": 1}
