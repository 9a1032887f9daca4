"""Shared end-to-end set-up: temporary git repositories holding the project with tiny params.

``tiny_clone`` is a fresh repository whose one commit is the working tree's code with the
tiny profile's params and no outputs. ``reproduced_tiny`` is that repository after one
whole ``dvc repro``, its ``dvc.lock`` and metrics committed (session-scoped: the pipeline
runs once for every test that needs it). A test that changes either must work on its own
copy (``copy_repo``), so that the tests stay independent of their order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import tiny

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(
    args: list[str], cwd: Path, check: bool = True, timeout: float = 900, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a command with the test environment's tools first on PATH; fail with its output."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kwargs
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def make_clone(repo: Path) -> Path:
    """The working tree's tracked and unignored files (no outputs), with the tiny params and
    no dvc.lock, committed in a fresh repository at ``repo``."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("data/", "models/", "metrics/")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    (repo / "dvc.lock").unlink(missing_ok=True)
    tiny.write_params(repo)
    for args in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "config", "user.name", "reprolab-test"],
        ["git", "config", "user.email", "test@reprolab.invalid"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "tiny"],
    ):
        run(args, repo)
    return repo


def copy_repo(src: Path, dst: Path) -> Path:
    """A full copy of a test repository (work tree, .git and the DVC cache)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


@pytest.fixture(scope="session")
def tiny_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clone(tmp_path_factory.mktemp("tiny") / "repo")


@pytest.fixture(scope="session")
def reproduced_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny repository after one whole ``dvc repro``, with its outputs committed.

    Treat it as read-only: copy it (``copy_repo``) to change anything.
    """
    repo = make_clone(tmp_path_factory.mktemp("reproduced") / "repo")
    run(["dvc", "repro"], repo, timeout=2400)  # about 5 min alone; a busy machine is slower
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "dvc repro (tiny)"], repo)
    return repo
