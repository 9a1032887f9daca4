"""Before a stage works: can it write its outputs at all?

A stage that computes for minutes and then meets a read-only directory or a full disk
wastes the run, so :func:`check_outputs` fails at once with one line naming the path.
Write-time failures that slip past it (the disk fills up during the run) are the atomic
writers' business (``reprolab.core.io``): they raise the same OutputError and leave the
previous output in place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from reprolab.core.errors import OutputError

DVC_YAML = Path("dvc.yaml")
# The least free space a stage starts with: below it even the small metrics files and
# DVC's own cache copy are at risk. Outputs larger than this still fail at write time.
MIN_FREE_BYTES = 64 * 2**20


def stage_outputs(name: str, dvc_yaml: Path = DVC_YAML) -> list[Path]:
    """The outs ``dvc.yaml`` declares for stage ``name`` (``step@item`` or ``step``).

    Empty where there is no ``dvc.yaml`` (a stage run outside the repository root, as in
    tests) or it does not know the stage; an out still holding an unresolved ``${...}``
    is skipped rather than guessed.
    """
    if not dvc_yaml.is_file():
        return []
    step, _, item = name.partition("@")
    spec = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {})
    spec = spec.get(step) or {}
    spec = spec.get("do", spec)  # a foreach/matrix stage keeps its body under `do`
    outs = []
    for out in spec.get("outs", []):
        path = out if isinstance(out, str) else next(iter(out))
        path = path.replace("${item}", item).replace("${key}", item)
        if "${" not in path:
            outs.append(Path(path))
    return outs


def _existing_ancestor(path: Path) -> Path:
    """The directory a write to ``path`` would first touch (``mkdir -p`` starts there)."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path(".")


def _homes(outs: list[Path]) -> dict[Path, Path]:
    """Each directory a stage writes into, with the output it writes there.

    An atomic write creates its temporary sibling in the output's parent; a directory
    output that already exists may also be written inside (dvclive's ``live/``).
    """
    homes: dict[Path, Path] = {}
    for out in outs:
        homes.setdefault(_existing_ancestor(out.parent), out)
        if out.is_dir():
            homes.setdefault(out, out)
    return homes


def check_outputs(outs: list[Path], min_free: int = MIN_FREE_BYTES) -> None:
    """Raise OutputError, naming the output, if any of ``outs`` cannot be written: its
    directory refuses a new file (read-only, no permission) or its file system has less
    than ``min_free`` bytes free."""
    seen_devices: set[int] = set()
    for home, out in _homes(outs).items():
        try:
            fd, probe = tempfile.mkstemp(prefix=".reprolab-probe.", suffix=".tmp", dir=home)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            if exc.errno in OutputError.ERRNOS:
                raise OutputError.from_oserror(out, exc) from exc
            raise
        device = home.stat().st_dev
        if device in seen_devices:
            continue
        seen_devices.add(device)
        free = shutil.disk_usage(home).free
        if free < min_free:
            raise OutputError(
                f"{out}: only {free / 2**20:.0f} MiB free on its file system, under the "
                f"{min_free / 2**20:.0f} MiB a stage starts with; free some space there "
                "(e.g. `dvc gc -w`, old checkpoints) and rerun"
            )


# Only errors that a write alone can meet: a stray EACCES may as well be an unreadable input.
_STRAY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


@contextlib.contextmanager
def output_errors() -> Iterator[None]:
    """Turn a stray "no space" or "read-only" OSError (one that did not come through the
    atomic writers, e.g. a library writing its log) into the same one-line OutputError."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _STRAY:
            raise
        where = os.fsdecode(exc.filename) if exc.filename is not None else "this stage's outputs"
        raise OutputError.from_oserror(where, exc) from exc
