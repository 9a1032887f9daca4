"""Stage failures: one line and a kind-specific exit code; the traceback only on request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reprolab.core.config import to_dict
from reprolab.core.errors import DependencyError, ResourceLimitError
from reprolab.core.resources import MemoryBudget, StageResources, rss_bytes
from tests.tiny import repo_params

ROOT = Path(__file__).resolve().parents[2]


def _stage(tmp_path: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _params(tmp_path: Path, **resources: object) -> None:
    data = to_dict(repo_params())
    data["resources"].update(resources)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))


def test_memory_budget_refuses_work_that_would_exceed_it() -> None:
    budget = MemoryBudget(64)
    with pytest.raises(ResourceLimitError, match=r"over the budget of 64 MiB.*memory_budget_mb"):
        budget.check(10 * 2**20, "a test chunk")
    MemoryBudget(rss_bytes() // 2**20 + 512).check(10 * 2**20, "a small chunk")


def test_stage_over_budget_exits_with_resource_limit(tmp_path: Path) -> None:
    _params(tmp_path, memory_budget_mb=64)
    proc = _stage(tmp_path, ["stages.generate", "markets"])
    assert proc.returncode == ResourceLimitError.exit_code
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: generate@markets: resource limit: generating 64 symbols")
    assert not (tmp_path / "data" / "raw" / "markets").exists()


def test_missing_input_is_a_dependency_error_and_debug_shows_traceback(tmp_path: Path) -> None:
    _params(tmp_path, progress=False)
    proc = _stage(tmp_path, ["stages.features", "markets"])
    assert proc.returncode == DependencyError.exit_code
    assert proc.stderr.strip().splitlines() == [
        "error: features@markets: missing dependency: data/split/markets/train: "
        "not found (run split_augment@markets first)"
    ]
    debug = _stage(tmp_path, ["stages.features", "markets"], REPROLAB_DEBUG="1")
    assert debug.returncode == DependencyError.exit_code
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("error: features@markets:")


def test_resources_are_recorded_only_for_a_successful_stage(tmp_path: Path) -> None:
    with StageResources("demo@x", tmp_path) as res:
        res.add_rows(1234)
    figures = yaml.safe_load((tmp_path / "demo_x.json").read_text())
    assert figures["rows"] == 1234 and figures["stage"] == "demo@x"
    assert figures["wall_s"] >= 0 and figures["cpu_s"] >= 0 and figures["peak_rss_mib"] > 10
    with pytest.raises(RuntimeError), StageResources("fail@x", tmp_path):
        raise RuntimeError("boom")
    assert not (tmp_path / "fail_x.json").exists()
