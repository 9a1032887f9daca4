"""The release tools' logic: which metrics are timing, gates by model and revision, the
report's metric tables, the dvc.lock comparison, and the promotion gate on a small git
repository (no pipeline run: validate.json and dvc.lock are written by hand)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reprolab.core.errors import DependencyError, GateError, ValidationError
from reprolab.release import gates
from reprolab.release.check import lock_differences
from reprolab.release.promote import check, promote
from reprolab.release.report import metrics_table, split_metrics
from reprolab.release.timing import is_timing

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("metrics/benchmark.json", "ratios.features_rate_over_naive"),  # the whole file
        ("metrics/benchmark.json", ""),
        ("metrics/resources/train_pinn.json", "peak_rss_mib"),
        ("metrics/train/cet/speed.json", "seconds_per_step"),
        ("metrics/walk_forward/speed.json", "fold_0_mamba"),
        ("./metrics/train/mamba/speed.json", ""),
        ("metrics/train/pinn/metrics.json", "phases.polish.wall_s"),  # by key, any file
        ("metrics/validate.json", "x.step_ms"),
        ("metrics/data/markets.json", "a.inference_ms_per_1000"),
        ("metrics/data/markets.json", "p95_us"),
        ("metrics/data/markets.json", "rows_per_s"),
        ("metrics/data/markets.json", "rss_mib_at_end"),
    ],
)
def test_timing_figures_are_timing(path: str, key: str) -> None:
    assert is_timing(path, key)


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("metrics/validate.json", "pinn.goals.price_rel_l2.value"),
        ("metrics/validate.json", "resources.goals.stages_over_memory_budget.passed"),
        ("metrics/train/cet/metrics.json", "adapters.lora.trainable_share"),  # _share ≠ _s
        ("metrics/train/mamba/metrics.json", "model.size_bytes"),
        ("metrics/data/markets.json", "train.symbols"),
        ("metrics/train/mamba/metrics.json", ""),
        ("metrics/train/mamba/live", ""),  # training curves are results
        ("models/pinn", ""),
        ("metrics/walk_forward/metrics.json", "pooled.mamba.accuracy"),
    ],
)
def test_results_are_not_timing(path: str, key: str) -> None:
    assert not is_timing(path, key)


def test_every_committed_metric_file_is_classified_as_the_pipeline_says() -> None:
    """dvc.yaml's timing outputs (resources, speed, benchmark) are timing; the other
    declared metrics are results (a key-level timing figure in them would be a surprise)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert not [m for m in spec["metrics"] if is_timing(m) and "benchmark" not in m]
    assert is_timing("metrics/benchmark.json")


def _gate(passed: bool, value: float = 1.0) -> dict:
    return {"value": value, "threshold": "<= 1", "passed": passed, "meaning": "m"}


def _validate(**failing: list[str]) -> dict:
    """A validate.json with two gates per section; ``section=[gate, ...]`` fail."""
    out: dict = {"failed": []}
    for section in gates.ORDER:
        goals = {g: _gate(g not in failing.get(section, [])) for g in ("a", "b")}
        out[section] = {"figures": {}, "goals": goals}
        out["failed"] += [f"{section}.{g}" for g in failing.get(section, [])]
    return out


def test_model_gates_are_its_section_and_the_shared_ones() -> None:
    judged = gates.model_gates(_validate(), "pinn")
    assert list(judged) == [f"{s}.{g}" for s in ("data", "resources", "pinn") for g in ("a", "b")]
    assert gates.failed(gates.model_gates(_validate(cet=["a"]), "pinn")) == []
    assert gates.failed(gates.model_gates(_validate(data=["b"]), "pinn")) == ["data.b"]


def test_unknown_model_is_one_clear_error() -> None:
    with pytest.raises(ValidationError, match="expected one of mamba, pinn, cet"):
        gates.model_gates(_validate(), "gpt")


def test_gates_that_changed_state_come_first() -> None:
    base, head = _validate(pinn=["a"]), _validate(cet=["b"])
    assert gates.changed_state(base, head) == ["pinn.a", "cet.b"]
    rows = gates.compare(base, head)
    assert [r[0] for r in rows[:2]] == ["pinn.a", "cet.b"]
    assert len(rows) == 10
    assert gates.summary(head) == "9/10 gates passed; failed: cet.b"
    assert gates.changed_state(None, head)[:1] == ["data.a"]  # no validate.json at base


def test_metrics_split_into_results_and_timing_sorted_without_prose() -> None:
    diff = {
        "metrics/validate.json": {
            "pinn.goals.a.passed": {"old": True, "new": False},
            "cet.goals.a.meaning": {"old": None, "new": "text"},
            "cet.figures.pass_rate": {"old": 0.5, "new": 0.75},
        },
        "metrics/benchmark.json": {"ratios.x": {"old": 1.0, "new": 2.0}},
        "metrics/data/markets.json": {"load_s": {"old": 1.0, "new": 2.0}},
    }
    results, timing = split_metrics(diff)
    assert [(p, k) for p, k, *_ in results] == [
        ("metrics/validate.json", "cet.figures.pass_rate"),
        ("metrics/validate.json", "pinn.goals.a.passed"),
    ]
    assert [(p, k) for p, k, *_ in timing] == [
        ("metrics/benchmark.json", "ratios.x"),
        ("metrics/data/markets.json", "load_s"),
    ]
    table = metrics_table(results)
    assert "| metrics/validate.json | cet.figures.pass_rate | 0.5 | 0.75 | 0.25 |" in table
    assert "| pass | **FAIL** |" in table
    assert metrics_table([]) == "No change.\n"


def _lock(model_md5: str = "m1", judged_md5: str = "m1", wall: str = "t1") -> dict:
    return {
        "schema": "2.0",
        "stages": {
            "train@pinn": {
                "cmd": "python -m stages.train pinn",
                "deps": [{"path": "data/features/options", "md5": "d1.dir"}],
                "params": {"params.yaml": {"seed": 1}},
                "outs": [
                    {"path": "models/pinn", "md5": model_md5},
                    {"path": "metrics/resources/train_pinn.json", "md5": wall},
                ],
            },
            "validate": {
                "cmd": "python -m stages.validate",
                "deps": [
                    {"path": "models/pinn", "md5": judged_md5},
                    {"path": "metrics/resources/train_pinn.json", "md5": wall},
                ],
                "outs": [{"path": "metrics/validate.json", "md5": "v1"}],
            },
        },
    }


def test_lock_differences_ignore_timing_files_only() -> None:
    assert lock_differences(_lock(wall="t1"), _lock(wall="t2")) == []
    lines = lock_differences(_lock(), _lock(model_md5="m2", judged_md5="m2"))
    assert lines == [
        "dvc.lock: train@pinn outs models/pinn: m1 -> m2",
        "dvc.lock: validate deps models/pinn: m1 -> m2",
    ]
    changed = copy.deepcopy(_lock())
    changed["stages"]["train@pinn"]["params"]["params.yaml"]["seed"] = 2
    assert lock_differences(_lock(), changed) == [
        'dvc.lock: train@pinn params params.yaml: {"seed": 1} -> {"seed": 2}'
    ]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A git repository with dvc.yaml's artifacts, a dvc.lock and a validate.json where
    every pinn gate passed and a cet gate failed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.name", "t")
    _git(repo, "config", "user.email", "t@example.invalid")
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"artifacts": spec["artifacts"]}))
    (repo / "dvc.lock").write_text(yaml.safe_dump(_lock()))
    (repo / "metrics").mkdir()
    (repo / "metrics/validate.json").write_text(json.dumps(_validate(cet=["b"])))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "results")
    return repo


def test_pipeline_declares_the_three_models_as_artifacts() -> None:
    artifacts = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]
    assert sorted(artifacts) == ["cet", "mamba", "pinn"]
    for name, a in artifacts.items():
        assert a["type"] == "model"
        assert a["path"] == f"models/{name}"
        assert a["desc"]
        assert a["labels"]


def test_promotion_refuses_a_failed_gate_naming_it(registry: Path) -> None:
    with pytest.raises(GateError, match=r"cet at \w{7} not promoted: failed gate\(s\) cet.b$"):
        check("HEAD", "cet", registry)


def test_promotion_refuses_bad_input_with_one_line(registry: Path) -> None:
    with pytest.raises(ValidationError, match="'nope' is not a commit"):
        check("nope", "pinn", registry)
    with pytest.raises(ValidationError, match="unknown model 'gpt'"):
        check("HEAD", "gpt", registry)
    (registry / "metrics/validate.json").unlink()
    _git(registry, "commit", "-qam", "no validate")
    with pytest.raises(DependencyError, match=r"metrics/validate.json is not committed"):
        check("HEAD", "pinn", registry)


def test_promotion_refuses_a_validate_json_that_judged_another_model(registry: Path) -> None:
    (registry / "dvc.lock").write_text(yaml.safe_dump(_lock(model_md5="m2")))
    _git(registry, "commit", "-qam", "retrained, not revalidated")
    with pytest.raises(GateError, match="judged models/pinn m1 but train@pinn produced m2"):
        check("HEAD", "pinn", registry)


def test_promotion_tags_record_gates_and_hashes(registry: Path) -> None:
    sha = _git(registry, "rev-parse", "HEAD").strip()
    assert promote("pinn", "prod", "HEAD", repo=registry) == ["pinn@v0.0.1", "pinn#prod#1"]
    message = _git(registry, "tag", "-l", "--format=%(contents)", "pinn@v0.0.1")
    assert f"pinn at {sha}: 6/6 gates passed (data, resources, pinn)" in message
    assert "validate: 9/10 gates passed; failed: cet.b" in message
    assert "model models/pinn md5 m1" in message
    assert "data data/features/options md5 d1.dir" in message
    # the same commit again: no second version, a second stage on the same version
    assert promote("pinn", "staging", "HEAD", repo=registry) == ["pinn#staging#2"]
    with pytest.raises(ValidationError, match=r"gto: .*already in stage 'prod'"):
        promote("pinn", "prod", "HEAD", repo=registry)


def test_promote_cli_is_one_line_and_a_nonzero_exit(registry: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reprolab.release.promote", "cet", "prod"],
        cwd=registry,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == GateError.exit_code
    assert proc.stderr.strip().splitlines() == [
        f"error: gate failed: cet at {_git(registry, 'rev-parse', '--short=7', 'HEAD').strip()}"
        " not promoted: failed gate(s) cet.b"
    ]
