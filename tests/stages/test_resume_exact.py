"""SIGTERM in every training phase, then a rerun: byte-identical models (resume is exact).

Each stage runs as ``python -m stages.train <model>`` in its own process, on tiny data. The
signal is sent by the guard's fault-injection hook (``REPROLAB_SIGNAL_AT``, see
:func:`reprolab.guard.common.signals.signal_at`) at a chosen epoch or step, so every phase is hit
deterministically. One chain per model: each run is stopped in the next phase (resuming the
ones before it), the last run finishes, and every model file must equal an uninterrupted
run's.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reprolab.core.config import load_params
from reprolab.core.resources import StageResources
from reprolab.core.stage import stage_module
from tests import tiny

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

# Two epochs per Keras step, so a signal in the second one resumes a half-done step
# (weights, optimizer moments and early-stopping state from the checkpoint).
OVERRIDES = {
    "train": {
        "mamba": {"epochs": 2, "patience": 2},
        "pinn": {"epochs_supervised": 2, "epochs_physics": 2, "epochs_rar": 2},
    }
}
DATASET = {"mamba": "markets", "pinn": "options", "cet": "contexts"}

# Where each run of the chain is stopped: "<checkpoint dir or phase>:<epoch or step index>".
CHAINS = {
    # the Mamba in its second epoch (its Keras comparator runs under the same guard; the
    # torch GRU has no checkpoint and retrains, deterministically)
    "mamba": ["mamba:1"],
    # every phase of the recipe and the L-BFGS polish (which restarts from its first step)
    "pinn": ["supervised_0:1", "physics_0:1", "rar_0:1", "lbfgs:2"],
    # pretraining, SFT and SCST (scheduler, RNG and rollback state are in the checkpoints)
    "cet": ["pretrain:2", "sft:1", "scst:1"],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny features of the three datasets (made in-process: a second each)."""
    root = tmp_path_factory.mktemp("resume-data")
    tiny.write_params(root, **OVERRIDES)
    with contextlib.chdir(root):
        params = load_params()
        for dataset in DATASET.values():
            steps = importlib.import_module(stage_module("generate", dataset))
            for step in ("generate", "split_augment", "features"):
                with StageResources(f"{step}@{dataset}", root / "res", False) as res:
                    getattr(steps, step)(params, res)
    return root


def _project(data: Path, where: Path) -> Path:
    where.mkdir()
    (where / "params.yaml").write_bytes((data / "params.yaml").read_bytes())
    (where / "data").symlink_to(data / "data")
    return where


def _train(cwd: Path, model: str, signal_at: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("REPROLAB_SIGNAL_AT", None)
    if signal_at:
        env["REPROLAB_SIGNAL_AT"] = signal_at
    return subprocess.run(
        [sys.executable, "-m", "stages.train", model],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _model_files(cwd: Path, model: str) -> dict[str, str]:
    top = cwd / "models" / model
    return {
        f.relative_to(top).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(top.rglob("*"))
        if f.is_file()
    }


@pytest.mark.parametrize("model", list(CHAINS))
def test_sigterm_in_every_phase_then_rerun_gives_identical_models(
    model: str, data: Path, tmp_path: Path
) -> None:
    clean = _project(data, tmp_path / "clean")
    proc = _train(clean, model)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = _model_files(clean, model)
    assert expected

    chain = _project(data, tmp_path / "chain")
    for point in CHAINS[model]:
        proc = _train(chain, model, signal_at=point)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 128 + 15, (point, proc.returncode, proc.stderr[-3000:])
        # one line, no traceback; it names the signal and says how to go on
        assert len(lines) == 1 and "Traceback" not in proc.stderr, (point, proc.stderr[-3000:])
        assert lines[0].startswith(f"error: train@{model}: interrupted: "), lines[0]
        assert "SIGTERM" in lines[0] or "signal 15" in lines[0], lines[0]
        assert "resume" in lines[0] or "again" in lines[0], lines[0]
        assert any((chain / ".checkpoints").rglob("*.*")), f"{point}: no checkpoint left"
    proc = _train(chain, model)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _model_files(chain, model) == expected
    # ... and by resuming: a checkpoint discarded as foreign would make the test vacuous.
    events = (chain / "metrics" / "train" / model / "metrics.json").read_text()
    assert "resumed from" in events and "discarded checkpoint" not in events
    assert not any((chain / ".checkpoints").rglob("*.*"))  # a finished run leaves none
