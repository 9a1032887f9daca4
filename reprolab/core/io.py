"""Atomic writes, locked read-modify-write updates and parquet helpers.

Every output goes to a temporary file in the destination directory, is flushed and
fsynced, then moved into place with ``os.replace``: readers see the old file or the new
one, never half of one, even if the writer is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import portalocker

from reprolab.core.errors import (
    DataQualityError,
    DependencyError,
    LockTimeoutError,
    OutputError,
)

PathLike = str | os.PathLike[str]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create owner-only files; outputs get the usual permissions instead.
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


def _fsync_dir(path: Path) -> None:
    """Persist a rename: the directory entry itself must reach the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _refuses_write(exc: OSError, final: Path) -> bool:
    """Whether ``exc`` is the file system refusing to write ``final`` (read-only, no
    permission, no space), rather than, say, an unreadable input or a bug."""
    if exc.errno not in OutputError.ERRNOS:
        return False
    if exc.filename is None:  # write() and fsync() errors name no file
        return True
    culprit = Path(os.fsdecode(exc.filename)).absolute()
    home = final.absolute().parent
    return culprit == home or home in culprit.parents or culprit in home.parents


@contextlib.contextmanager
def _output_errors(final: Path) -> Iterator[None]:
    """Turn the file system refusing to write ``final`` into one OutputError line."""
    try:
        yield
    except OSError as exc:
        if _refuses_write(exc, final):
            raise OutputError.from_oserror(final, exc) from exc
        raise


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and move it into place.

    A read-only or full file system raises OutputError naming ``path``; the previous
    file stays as it was.
    """
    final = Path(path)
    tmp: Path | None = None
    try:
        with _output_errors(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{final.name}.", suffix=".tmp", dir=final.parent
            )
            os.close(fd)
            tmp = Path(tmp_name)
            yield tmp
            with open(tmp, "rb+") as fh:
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, final)
            _fsync_dir(final.parent)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, fixed indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def rounded(obj: Any, digits: int = 6) -> Any:
    """Floats to ``digits`` significant digits, through dicts and lists: stable metrics files.

    Significant (not decimal) digits keep small errors such as 4.9e-4 readable.
    """
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


def write_json(path: PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_json(path: PathLike) -> Any:
    p = Path(path)
    if not p.exists():
        raise DependencyError(f"{p}: file not found (run the stage that produces it first)")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataQualityError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two paths in one step (Linux >= 3.15)


def _load_renameat2() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):  # not glibc >= 2.28 / not Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _load_renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap ``a`` and ``b``; False where the kernel or file system cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def _recover_dir(final: Path) -> None:
    """Clear what an interrupted :func:`atomic_dir` left beside ``final``.

    Only the fallback swap has an instant without ``final``: then the complete old
    output is the ``.old.`` sibling, and it is put back before anything is deleted.
    """
    if not final.exists():
        asides = sorted(
            final.parent.glob(f".{final.name}.old.*.tmp"), key=lambda p: p.stat().st_mtime
        )
        if asides:
            os.rename(asides[-1], final)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)


def _swap_in(tmp: Path, final: Path) -> None:
    """Put the complete directory ``tmp`` at ``final``; delete the previous output last.

    With renameat2(RENAME_EXCHANGE) ``final`` is the old or the new directory at every
    instant. Elsewhere the old one is renamed aside first: a crash between the two
    renames leaves it complete under ``.name.old.*.tmp``, and the next run restores it.
    """
    old: Path | None = None
    if not os.path.lexists(final):
        os.rename(tmp, final)
    elif _exchange(tmp, final):
        old = tmp  # the swap left the previous output under the temporary name
    else:
        old = final.parent / f".{final.name}.old.{secrets.token_hex(4)}.tmp"
        os.rename(final, old)
        os.rename(tmp, final)
    _fsync_dir(final.parent)
    if old is not None and old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    elif old is not None:  # the previous output was a file or a link
        old.unlink()


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Build a directory output in a temporary sibling, then swap it into place.

    Readers see the complete old directory or the complete new one. An interrupted
    stage leaves at most a hidden ``.name.*.tmp`` directory behind (cleared on the next
    run). A read-only or full file system raises OutputError naming ``path``.
    """
    final = Path(path)
    tmp: Path | None = None
    try:
        with _output_errors(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            _recover_dir(final)
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
            yield tmp
            for root, _dirs, files in os.walk(tmp):
                for name in files:
                    with open(os.path.join(root, name), "rb") as fh:
                        os.fsync(fh.fileno())
                _fsync_dir(Path(root))
            os.chmod(tmp, _DIR_MODE)
            _swap_in(tmp, final)
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def locked_update(
    path: PathLike, update: Callable[[Any], Any], default: Any = None, timeout: float = 60.0
) -> Any:
    """Read-modify-write a JSON file under an exclusive lock; returns the new value.

    The lock lives in a sidecar ``<name>.lock`` file because the data file itself is
    replaced (new inode) on every write. Waits at most ``timeout`` seconds for another
    holder, then raises LockTimeoutError naming the lock file.
    """
    p = Path(path)
    lock_path = p.with_name(p.name + ".lock")
    # Non-blocking attempts retried by portalocker: in blocking mode it ignores `timeout`.
    lock = portalocker.Lock(
        lock_path,
        mode="a",
        timeout=timeout,
        check_interval=0.005,
        fail_when_locked=False,
        flags=portalocker.LOCK_EX | portalocker.LOCK_NB,
    )
    with _output_errors(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire()
        except portalocker.AlreadyLocked:
            raise LockTimeoutError(
                f"{lock_path}: another process still held this lock after {timeout:g} s; "
                "wait for it to finish (or raise the timeout) and rerun"
            ) from None
    try:
        current = read_json(p) if p.exists() else default
        new = update(current)
        write_json(p, new)
        return new
    finally:
        lock.release()
