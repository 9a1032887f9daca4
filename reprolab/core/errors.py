"""Pipeline errors: each kind maps to a distinct exit code and prints as one line."""

from __future__ import annotations

import errno
import os


class PipelineError(Exception):
    """Base class: a failure the user can act on, reported as one clear line."""

    exit_code = 1
    kind = "pipeline error"


class ValidationError(PipelineError):
    """Bad parameters or bad input values (names the key or field)."""

    exit_code = 2
    kind = "invalid input"


class DependencyError(PipelineError):
    """A required input file or package is missing or unreadable."""

    exit_code = 3
    kind = "missing dependency"


class DataQualityError(PipelineError):
    """Data that violates a declared quality gate (names the column or row)."""

    exit_code = 4
    kind = "data quality"


class ResourceLimitError(PipelineError):
    """Work that would exceed a declared resource budget (memory, batch size)."""

    exit_code = 5
    kind = "resource limit"


class CheckpointError(PipelineError):
    """A checkpoint that cannot be written, read or resumed from."""

    exit_code = 6
    kind = "checkpoint"


class GateError(PipelineError):
    """A validate gate that did not pass under ``validate.strict`` (each one named)."""

    exit_code = 7
    kind = "gate failed"


class OutputError(PipelineError):
    """An output that cannot be written: read-only or unwritable directory, or no space."""

    exit_code = 8
    kind = "cannot write output"

    # The errno values that mean "this location refuses the write", not "the code is wrong".
    ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})

    @classmethod
    def from_oserror(cls, path: str | os.PathLike[str], exc: OSError) -> OutputError:
        """One line naming ``path``, what happened and what to do about it."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            what = "no space left on its file system (or over quota)"
            todo = "free some space there (e.g. `dvc gc -w`, old checkpoints) and rerun"
        elif exc.errno == errno.EROFS:
            what = "read-only file system"
            todo = "run from a writable checkout or remount it read-write"
        else:
            what = "permission denied"
            where = os.path.dirname(os.fspath(path)) or "."
            todo = f"make {where} writable by this user (chmod/chown) and rerun"
        return cls(f"{path}: {what}; {todo}")


class LockTimeoutError(PipelineError):
    """A lock that another process still held when the timeout ran out."""

    exit_code = 9
    kind = "lock timeout"
