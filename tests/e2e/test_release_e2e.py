"""Pull requests and releases, end to end, on the tiny repository after its shared
``dvc repro``: a second commit that changes one validate threshold (only ``validate``
reruns), then the pull-request report, the experiment commands, the reproducibility check
and the promotion gate with GTO, each on its own copy."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import copy_repo, run

VENV = Path(sys.executable).parent.parent  # make's VENV=: never installs into the clone
PARAM = "validate.mamba.expected_accuracy_minus_oracle"
GATE = "mamba.expected_accuracy_minus_oracle"  # fails on the tiny profile; passes at >= -1
THRESHOLD = ">= -0.001"  # its threshold in params.yaml
# A validate threshold must never rerun what produces data, models or timings.
EXPENSIVE = (
    "generate@",
    "split_augment@",
    "features@",
    "data_metrics@",
    "train@",
    "walk_forward",
    "benchmark",
)


def _set(repo: Path, key: str, value: str) -> None:
    """One params.yaml value changed, written the way the tiny profile writes it."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    *path, last = key.split(".")
    node = params
    for part in path:
        node = node[part]
    node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _commit_change(repo: Path, key: str, value: str) -> list[str]:
    """Set ``key``, ``dvc repro``, commit; the stages that ran."""
    _set(repo, key, value)
    out = run(["dvc", "repro"], repo).stdout
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", f"{key}: {value}"], repo)
    return re.findall(r"^Running stage '([^']+)'", out, flags=re.M)


def _failed(repo: Path) -> list[str]:
    return json.loads((repo / "metrics/validate.json").read_text())["failed"]


def _others(repo: Path) -> list[str]:
    """The Mamba's failing gates besides GATE (the tiny models miss its margins too)."""
    return [g for g in _failed(repo) if g.startswith("mamba.") and g != GATE]


def _make(repo: Path, *args: str, check: bool = True):
    return run(["make", *args, f"VENV={VENV}"], repo, check=check)


@pytest.fixture(scope="module")
def relaxed(reproduced_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny results (HEAD~1), then a commit that relaxes one Mamba gate (HEAD)."""
    repo = copy_repo(reproduced_tiny, tmp_path_factory.mktemp("relaxed") / "repo")
    before = json.loads((repo / "metrics/validate.json").read_text())
    assert GATE in before["failed"] and _others(repo)  # the premise
    ran = _commit_change(repo, PARAM, ">= -1")
    assert "validate" in ran and not [s for s in ran if s.startswith(EXPENSIVE)]
    return repo


@pytest.fixture
def clone(relaxed: Path, tmp_path: Path) -> Path:
    return copy_repo(relaxed, tmp_path / "repo")


def _gates_total(repo: Path) -> int:
    """How many gates validate judged (the count is the params', not the test's, to fix)."""
    report = json.loads((repo / "metrics" / "validate.json").read_text())
    return sum(len(v["goals"]) for v in report.values() if isinstance(v, dict) and "goals" in v)


def _section(report: str, title: str) -> str:
    return report.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _table(text: str) -> list[list[str]]:
    """The rows of the first markdown table in ``text`` (header and rule left out)."""
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]


@pytest.mark.e2e
@pytest.mark.slow
def test_pr_report_shows_exactly_the_changed_param_metrics_and_gate(clone: Path) -> None:
    _make(clone, "pr-report", "BASE=HEAD~1")
    report = (clone / "pr-report.md").read_text()

    assert _table(_section(report, "Params")) == [["params.yaml", PARAM, THRESHOLD, ">= -1"]]
    metrics = _table(_section(report, "Metrics"))
    assert sorted((r[0], r[1], r[2], r[3]) for r in metrics) == [
        ("metrics/validate.json", f"mamba.goals.{GATE.split('.')[1]}.passed", "**FAIL**", "pass"),
        (
            "metrics/validate.json",
            f"mamba.goals.{GATE.split('.')[1]}.threshold",
            THRESHOLD,
            ">= -1",
        ),
    ]
    assert "0 changed speed or memory figure(s)" in _section(report, "Timing and resources")

    gates = _section(report, "Validate gates")
    assert f"- changed state: {GATE}\n" in gates
    assert _table(gates)[0] == [
        f"**{GATE}**",
        "**FAIL**",
        "pass",
        *_table(gates)[0][3:4],
        f"{THRESHOLD} → >= -1",
    ]
    total, failed = _gates_total(clone), len(_failed(clone))
    base, head = total - failed - 1, total - failed  # HEAD passes the relaxed gate too
    assert re.search(rf"- base: {base}/{total} gates passed; failed: .*" + re.escape(GATE), gates)
    assert re.search(
        rf"- head: {head}/{total} gates passed; failed: (?!.*" + re.escape(GATE) + ")", gates
    )

    plots = _section(report, "Plots")
    assert "(pr-report-plots/index.html)" in plots
    assert (clone / "pr-report-plots/index.html").is_file()
    for link in re.findall(r"\]\((pr-report-plots/[^)]+)\)", plots):
        assert (clone / link).is_file(), link


@pytest.mark.e2e
@pytest.mark.slow
def test_pr_report_bad_base_is_one_line(clone: Path) -> None:
    proc = _make(clone, "pr-report", "BASE=no-such-branch", check=False)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        "error: invalid input: 'no-such-branch' is not a commit of this repository: expected a "
        "branch, tag or sha (in CI, fetch the full history: fetch-depth 0)"
    ]
    assert "Traceback" not in proc.stderr
    assert not (clone / "pr-report.md").exists()


@pytest.mark.e2e
@pytest.mark.slow
def test_exp_show_and_exp_diff_on_the_tiny_profile(clone: Path) -> None:
    shown = json.loads(run(["dvc", "exp", "show", "--json", "-n", "2"], clone).stdout)
    revs = [row["rev"] for row in shown]
    assert revs[0] == "workspace" and len(revs) == 3  # the workspace, HEAD and HEAD~1
    values = {
        row["rev"]: row["data"]["params"]["params.yaml"]["data"]["validate"]["mamba"]
        for row in shown
    }
    assert [v["expected_accuracy_minus_oracle"] for v in values.values()] == [
        ">= -1",
        ">= -1",
        THRESHOLD,
    ]
    assert "metrics/validate.json" in shown[0]["data"]["metrics"]

    diff = json.loads(run(["dvc", "exp", "diff", "HEAD~1", "HEAD", "--json"], clone).stdout)
    assert diff["params"] == {"params.yaml": {PARAM: {"old": THRESHOLD, "new": ">= -1"}}}
    changed = diff["metrics"]["metrics/validate.json"]
    assert changed[f"mamba.goals.{GATE.split('.')[1]}.passed"]["new"] is True
    assert set(changed) == {
        f"mamba.goals.{GATE.split('.')[1]}.passed",
        f"mamba.goals.{GATE.split('.')[1]}.threshold",
    }


@pytest.mark.e2e
@pytest.mark.slow
def test_check_repro_passes_on_committed_results_and_names_a_changed_one(clone: Path) -> None:
    assert "every non-timing metric" in _make(clone, "check-repro").stdout
    data = clone / "metrics/data/markets.json"
    figures = json.loads(data.read_text())
    figures["train"]["symbols"] += 1
    data.write_text(json.dumps(figures))
    proc = _make(clone, "check-repro", check=False)
    assert proc.returncode != 0
    assert "metric metrics/data/markets.json train.symbols:" in proc.stdout
    assert "error: data quality: 1 result(s) differ from HEAD's" in proc.stderr


def _sha256s(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".gitignore"
    }


@pytest.mark.e2e
@pytest.mark.slow
def test_promotion_only_when_the_gates_passed_then_gto_and_dvc_find_it(clone: Path) -> None:
    short = run(["git", "rev-parse", "--short=7", "HEAD"], clone).stdout.strip()
    others = _others(clone)
    refused = _make(clone, "promote", "MODEL=mamba", "STAGE=prod", check=False)
    assert refused.returncode != 0 and "Error 7" in refused.stderr  # the gate's exit code
    assert re.findall(r"^error: .*", refused.stderr, flags=re.M) == [
        f"error: gate failed: mamba at {short} not promoted: failed gate(s) {', '.join(others)}"
    ]
    assert run(["git", "tag"], clone).stdout == ""

    for gate in others:  # one commit each; the last one leaves every Mamba gate passing
        assert "validate" in _commit_change(clone, f"validate.{gate}", ">= -1")
    head = run(["git", "rev-parse", "HEAD"], clone).stdout.strip()
    pinn = _make(clone, "promote", "MODEL=pinn", "STAGE=prod", check=False)
    assert pinn.returncode != 0 and "failed gate(s) pinn." in pinn.stderr
    old = _make(clone, "promote", "MODEL=mamba", "STAGE=prod", "REV=HEAD~1", check=False)
    assert old.returncode != 0 and f"failed gate(s) {others[-1]}" in old.stderr

    done = _make(clone, "promote", "MODEL=mamba", "STAGE=prod")
    assert "created tag mamba@v0.0.1" in done.stdout and "created tag mamba#prod#1" in done.stdout
    message = run(["git", "tag", "-l", "--format=%(contents)", "mamba@v0.0.1"], clone).stdout
    lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]["train@mamba"]
    model_md5 = next(o["md5"] for o in lock["outs"] if o["path"] == "models/mamba")
    data_md5 = next(d["md5"] for d in lock["deps"] if d["path"] == "data/features/markets")
    assert f"mamba at {head}: 11/11 gates passed (data, resources, mamba)" in message
    total, failed = _gates_total(clone), len(_failed(clone))  # only the PINN's and CET's now
    assert f"validate: {total - failed}/{total} gates passed; failed: pinn." in message
    assert f"model models/mamba md5 {model_md5}" in message
    assert f"data data/features/markets md5 {data_md5}" in message

    shown = run(["gto", "show"], clone).stdout
    assert re.search(r"mamba\s*│\s*v0\.0\.1\s*│\s*v0\.0\.1", shown), shown
    history = run(["gto", "history", "mamba"], clone).stdout
    assert "registration" in history and "assignment" in history and "mamba#prod#1" in history

    for how in (["--rev", "v0.0.1"], ["--stage", "prod"]):
        out = clone.parent / f"got{how[0]}"
        run(["dvc", "artifacts", "get", ".", "mamba", *how, "-o", str(out)], clone)
        assert _sha256s(out) == _sha256s(clone / "models/mamba")
