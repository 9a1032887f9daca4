"""What the release tools share: git and dvc as subprocesses, reading a file at a revision,
and the one-line error contract of their command lines."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from reprolab.core.errors import DependencyError, PipelineError, ValidationError


def git(args: Sequence[str], cwd: Path = Path(".")) -> subprocess.CompletedProcess[str]:
    """``git <args>`` in ``cwd``, captured, never raising on a non-zero exit."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def dvc(args: Sequence[str], cwd: Path = Path(".")) -> str:
    """``dvc <args>`` with this interpreter's dvc (the pinned one); its stdout.

    A failure becomes one DependencyError line with dvc's last error line.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        raise DependencyError(f"dvc {' '.join(args)} failed: {last}")
    return proc.stdout


def resolve(rev: str, cwd: Path = Path(".")) -> str:
    """The full commit sha of ``rev``; a ValidationError line if git does not know it."""
    proc = git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ValidationError(
            f"{rev!r} is not a commit of this repository: expected a branch, tag or sha "
            "(in CI, fetch the full history: fetch-depth 0)"
        )
    return proc.stdout.strip()


def show_text(rev: str, path: str, cwd: Path = Path(".")) -> str | None:
    """The text of ``path`` as committed at ``rev`` (a resolved sha), or None if absent."""
    proc = git(["show", f"{rev}:{path}"], cwd)
    return proc.stdout if proc.returncode == 0 else None


def read_at(rev: str | None, path: str, cwd: Path = Path(".")) -> Any | None:
    """JSON or YAML ``path`` at ``rev`` (None: the workspace); None if the file is absent."""
    if rev is None:
        p = cwd / path
        text = p.read_text(encoding="utf-8") if p.exists() else None
    else:
        text = show_text(rev, path, cwd)
    if text is None:
        return None
    where = f"{path} at {rev[:7] if rev else 'the workspace'}"
    try:
        return json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValidationError(f"{where}: not valid {Path(path).suffix[1:]}: {exc}") from None


def cli(main: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run ``main``; a PipelineError is one ``error: ...`` line and its exit code."""
    try:
        return main(list(sys.argv[1:] if argv is None else argv))
    except PipelineError as exc:
        print(f"error: {exc.kind}: {exc}", file=sys.stderr)
        return exc.exit_code
