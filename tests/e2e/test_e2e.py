"""End to end: a tiny-params `dvc repro` in a temporary clone, twice, byte for byte.

Proves: the pipeline runs from a clean tree; a second `dvc repro` does nothing; forced
re-runs give identical hashes for every data output and identical data metrics; an
experiment with `-S` runs and `dvc exp show` lists the params and the data metrics; and no
stage except the judges depends on the judge-only truth.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from reprolab.core import registry
from tests.e2e.conftest import copy_repo, run

JUDGES = ("data_metrics@", "validate")  # the only stages that may read data/truth


def _run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(args, cwd, check=check)


@pytest.fixture
def clone(reproduced_tiny: Path, tmp_path: Path) -> Path:
    """This test's own copy of the tiny repository after its first whole `dvc repro`."""
    return copy_repo(reproduced_tiny, tmp_path / "repo")


def _lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())


def _hashed_outputs(repo: Path) -> dict[str, str]:
    """dvc.lock's hash of every cached output (data, features and models), by path."""
    out = {}
    for stage in _lock(repo)["stages"].values():
        for o in stage.get("outs", []):
            # cache: false outputs (metrics, timings) are git's business, not hashed here
            if o["path"].startswith(("data/", "models/")):
                out[o["path"]] = o["md5"]
    return out


def _data_metrics(repo: Path) -> dict[str, object]:
    return {p.name: json.loads(p.read_text()) for p in sorted((repo / "metrics/data").glob("*"))}


def _trained(repo: Path) -> dict[str, str]:
    """sha256 of every model file (model.keras, the comparators, the PINN export, the CET
    base, tokenizer and adapter, ...) and of every training metrics.json."""
    files = sorted((repo / "models").rglob("*")) + sorted(repo.glob("metrics/train/*/metrics.json"))
    return {
        f.relative_to(repo).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in files
        if f.is_file() and f.name != ".gitignore"
    }


def _resource_files(repo: Path) -> list[Path]:
    """The resource file of every stage before the closing ones (validate, benchmark)."""
    files = sorted((repo / "metrics/resources").glob("*.json"))
    return [f for f in files if f.name not in ("validate.json", "benchmark.json")]


@pytest.mark.e2e
@pytest.mark.slow
def test_repro_is_complete_cached_and_byte_identical(clone: Path) -> None:
    stages = set(_lock(clone)["stages"])
    for step in ("generate", "split_augment", "features", "data_metrics"):
        for dataset in ("markets", "options", "contexts"):
            assert f"{step}@{dataset}" in stages
    assert {"train@mamba", "train@pinn", "train@cet", "walk_forward", "validate", "benchmark"} <= (
        stages
    )
    judged = json.loads((clone / "metrics/validate.json").read_text())
    assert {*registry.GATE_SECTIONS, "walk_forward", "failed"} == set(judged)
    assert not [f for f in judged["failed"] if f.startswith(("data.", "resources."))]
    assert judged["mamba"]["oracle_gap"]["model"]["windows"] > 0
    first_hashes, first_metrics = _hashed_outputs(clone), _data_metrics(clone)
    first_trained = _trained(clone)
    # raw, truth, split and features of every dataset, every model directory, the walk-forward
    assert len(first_hashes) == 4 * len(registry.DATASETS) + len(registry.MODELS) + 1
    assert {"models/cet/adapter/adapter_config.json", "models/mamba/model.keras"} <= set(
        first_trained
    )
    assert set(first_metrics) == {f"{d}.json" for d in registry.DATASETS}
    assert first_metrics["contexts.json"]["test"]["pass_rate"]["gold"] == 1.0
    assert first_metrics["markets.json"]["test"]["oracle_accuracy"] > 0.4

    again = _run(["dvc", "repro"], clone)
    assert "Data and pipelines are up to date" in again.stdout

    bench = json.loads((clone / "metrics/benchmark.json").read_text())
    assert {"pricer", "mamba", "cet", "data", "resources", "ratios", "goals"} == set(bench)
    assert all(v is not None and v > 0 for v in bench["ratios"].values()), bench["ratios"]
    stages_timed = {json.loads(f.read_text())["stage"] for f in _resource_files(clone)}
    assert set(bench["resources"]) == stages_timed  # every stage's time and peak RSS

    # A second run in fresh processes, forced, against the first (the fixture's); the
    # benchmark (timings only, nothing hashed) is left out.
    _run(["dvc", "repro", "--force", "validate"], clone)
    assert _hashed_outputs(clone) == first_hashes
    assert _data_metrics(clone) == first_metrics
    assert _trained(clone) == first_trained

    # Only judges read the truth, and nothing but a judge consumes what a judge writes.
    lock = _lock(clone)["stages"]
    judge_outs = {
        o["path"]
        for n, s in lock.items()
        if n.startswith(JUDGES)
        for o in s["outs"]
        if not o["path"].startswith("metrics/resources/")  # timings, which the benchmark reads
    }
    for name, stage in lock.items():
        deps = [d["path"] for d in stage.get("deps", [])]
        if not name.startswith(JUDGES):
            assert not [d for d in deps if d.startswith("data/truth")], name
            assert not set(deps) & judge_outs, name


@pytest.mark.e2e
@pytest.mark.slow
def test_experiment_with_set_param_is_listed(clone: Path) -> None:
    # A param only `validate` reads: the experiment reruns that stage alone (the data and
    # model params are exercised by the release e2e test's commits).
    ran = _run(
        ["dvc", "exp", "run", "-S", "validate.pinn_fresh_contracts=3000", "-n", "fresher"], clone
    )
    assert "Running stage 'validate'" in ran.stdout
    assert "Running stage 'train@" not in ran.stdout  # a change reruns only what it touches
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], clone).stdout)
    text = json.dumps(shown)
    assert '"fresher"' in text
    assert '"pinn_fresh_contracts": 3000' in text
    assert "oracle_accuracy" in text
    assert "metrics/data/markets.json" in text
