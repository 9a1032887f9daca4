"""`dvc repro` killed in the middle of a data stage and of a training stage, and `dvc` alone
terminated while a stage trains: each time the next `dvc repro` finishes and every hash in
`dvc.lock` equals an uninterrupted run's.

One chain on the options pipeline (`dvc repro train@pinn` pulls in only generate, split and
features of options): each run is stopped at a point chosen deterministically, never by
racing with sleeps:

1. SIGKILL to the process group of `dvc repro` while features@options writes its files
   (an audit hook, loaded by ``sitecustomize`` in that stage's process only);
2. SIGTERM to the `dvc` process alone while train@pinn trains (the guard's fault-injection
   hook, ``REPROLAB_SIGNAL_AT=<point>=PARENT``): the stage must stop too, with one line and a
   checkpoint, instead of training on orphaned;
3. SIGKILL to the process group while train@pinn trains (``=SIGKILL``);
4. a plain `dvc repro`, compared with the reference ``reproduced_tiny``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import BIN, copy_repo

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TARGET = "train@pinn"
CHAIN = ("generate@options", "split_augment@options", "features@options", TARGET)

# Loaded by every Python process of the run (PYTHONPATH), active only in the stage named by
# KILL_IN_STAGE (DVC sets DVC_STAGE for each stage's command, not for itself): at the
# KILL_AT_WRITE-th file opened for writing, SIGKILL the whole process group.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, signal, sys
    if os.environ.get("DVC_STAGE") and os.environ.get("DVC_STAGE") == os.environ.get(
        "KILL_IN_STAGE"
    ):
        _writes = [0]

        def _kill_mid_write(event, args):
            if event == "open" and args[1] and any(c in str(args[1]) for c in "wax+"):
                _writes[0] += 1
                if _writes[0] == int(os.environ["KILL_AT_WRITE"]):
                    os.killpg(os.getpgid(0), signal.SIGKILL)

        sys.addaudithook(_kill_mid_write)
    """
)


def _repro(repo: Path, **env_over: str) -> subprocess.CompletedProcess[str]:
    """`dvc repro train@pinn` in a session of its own (a group kill spares pytest); waits
    until every process holding its output pipes (an orphaned stage too) has exited."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # DVC runs each cmd with $SHELL -c, /bin/sh when unset (as under CI): dash there forks
    # for a plain command, so only dvc.yaml's `exec` keeps the stage DVC's direct child.
    env["SHELL"] = "/bin/sh"
    for key in ("PYTHONPATH", "REPROLAB_SIGNAL_AT", "KILL_IN_STAGE", "KILL_AT_WRITE"):
        env.pop(key, None)
    env.update(env_over)
    proc = subprocess.Popen(
        ["dvc", "repro", TARGET],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _outs(repo: Path) -> dict[str, dict[str, str]]:
    """The hash of every cached output (data and models) of the chain's stages, by stage."""
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {
        name: {
            o["path"]: o["md5"]
            for o in stages[name].get("outs", [])
            if o["path"].startswith(("data/", "models/"))
        }
        for name in CHAIN
        if name in stages
    }


def test_killed_and_terminated_repro_resumes_to_the_same_lock(
    tiny_clone: Path, reproduced_tiny: Path, tmp_path: Path
) -> None:
    repo = copy_repo(tiny_clone, tmp_path / "repo")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)

    # 1. SIGKILL while features@options writes its fourth file (train written, val not).
    run = _repro(repo, PYTHONPATH=str(hook), KILL_IN_STAGE="features@options", KILL_AT_WRITE="4")
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert "Running stage 'features@options'" in run.stdout + run.stderr
    assert not (repo / "models/pinn").exists()

    # 2. SIGTERM to `dvc` alone in the first epoch of physics_0: the stage gets SIGTERM
    # when its parent dies, saves its checkpoint and says so in one line.
    run = _repro(repo, REPROLAB_SIGNAL_AT="physics_0:0=PARENT")
    assert run.returncode == -signal.SIGTERM, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: train@pinn: interrupted: interrupted at epoch 1/1 (SIGTERM); run the stage "
        "again to resume from .checkpoints/train_pinn/physics_0"
    ], run.stderr[-3000:]
    assert (repo / ".checkpoints/train_pinn/physics_0/checkpoint.npz").is_file()
    assert not (repo / "models/pinn/model.keras").exists()  # it did not train on, orphaned

    # 3. SIGKILL to the whole group at the start of the refinement round.
    run = _repro(repo, REPROLAB_SIGNAL_AT="rar_0:0=SIGKILL")
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert (repo / ".checkpoints/train_pinn/physics_0.done.npz").is_file()

    # 4. A plain rerun finishes, with the hashes of an uninterrupted run.
    run = _repro(repo)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _outs(repo) == _outs(reproduced_tiny)
    assert set(_outs(repo)) == set(CHAIN)
    assert not (repo / ".checkpoints/train_pinn").exists()
    assert not list((repo / "data").rglob(".*.tmp"))  # no half-written leftovers
