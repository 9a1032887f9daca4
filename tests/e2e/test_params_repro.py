"""A bad params.yaml costs no output: the whole file is checked before DVC touches anything.

`dvc repro` deletes a stage's outputs before it runs the stage's command, so a bad value
found by the stage itself would leave them deleted (and its `cache: false` metrics for good).
`make repro` checks params.yaml before calling DVC; under a plain `dvc repro` the first stage,
check_params, fails before DVC reaches any other stage.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from reprolab.core.config import CHECK_MARKER
from tests.e2e.conftest import copy_repo, run

VENV = Path(sys.executable).parent.parent  # this test's own environment, never reinstalled


def _snapshot(repo: Path) -> dict[str, str]:
    """sha256 of every file the pipeline wrote or records (outputs, metrics, dvc.lock)."""
    outputs = (f for d in ("data", "metrics", "models") for f in (repo / d).rglob("*"))
    files = [repo / "dvc.lock", *sorted(f for f in outputs if f.is_file())]
    return {
        f.relative_to(repo).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in files
    }


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_typo_in_params_leaves_every_output_byte_identical(
    tiny_clone: Path, tmp_path: Path
) -> None:
    repo = copy_repo(tiny_clone, tmp_path / "repo")
    run(["dvc", "repro", "generate@markets"], repo)
    before = _snapshot(repo)
    # the stage's hashed outputs and its cache: false timing metrics, which nothing restores
    assert {"metrics/resources/generate_markets.json", CHECK_MARKER.as_posix()} <= set(before)
    assert any(p.startswith("data/raw/markets/") for p in before)
    assert any(p.startswith("data/truth/markets/") for p in before)

    params = repo / "params.yaml"
    good = params.read_text()
    assert good.count("n_symbols: 3") == 1
    params.write_text(good.replace("n_symbols: 3", "n_symbol: 3"))
    expected = "error: check_params: invalid input: params.yaml: markets.generate.n_symbol: "

    made = run(["make", "repro", f"VENV={VENV}"], repo, check=False)
    assert made.returncode != 0
    (line,) = _errors(made.stderr)
    assert line.startswith(expected) and line.endswith("(did you mean 'n_symbols'?)")
    assert "Running stage" not in made.stdout + made.stderr  # DVC never started
    assert _snapshot(repo) == before

    plain = run(["dvc", "repro"], repo, check=False)
    assert plain.returncode != 0
    (line,) = _errors(plain.stdout + plain.stderr)
    assert line.startswith(expected)
    after = _snapshot(repo)
    # DVC deleted only the check's own marker (cached: `dvc checkout check_params`)
    assert after == {k: v for k, v in before.items() if k != CHECK_MARKER.as_posix()}

    # Fixed, with a value generate@markets does not read: the check reruns, and its marker's
    # constant bytes rerun nothing downstream.
    params.write_text(good.replace("  rounds: 1\n", "  rounds: 2\n"))
    again = run(["dvc", "repro", "generate@markets"], repo)
    assert "Running stage 'check_params'" in again.stdout
    assert "Stage 'generate@markets' didn't change, skipping" in again.stdout
    assert {k: v for k, v in _snapshot(repo).items() if k != "dvc.lock"} == {
        k: v for k, v in before.items() if k != "dvc.lock"
    }
