"""The pull-request workflow cannot run here: check what can be checked locally. It parses,
runs on pull requests with the full history, calls only make targets, modules and scripts
that exist, and posts its comment with `gh`, not with a third-party action."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "pr.yml"
FIRST_PARTY = ("actions/",)  # GitHub's own actions only


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(workflow: dict) -> list[dict]:
    return [s for job in workflow["jobs"].values() for s in job["steps"]]


def _runs(workflow: dict) -> str:
    return "\n".join(s.get("run", "") for s in _steps(workflow))


def _targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, flags=re.M))


def test_runs_on_pull_requests(workflow: dict) -> None:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in (on if isinstance(on, dict | list) else [on])


def test_every_checkout_has_the_full_history(workflow: dict) -> None:
    checkouts = [s for s in _steps(workflow) if s.get("uses", "").startswith("actions/checkout")]
    assert len(checkouts) == len(workflow["jobs"]) >= 2
    assert all(s["with"]["fetch-depth"] == 0 for s in checkouts)


def test_every_make_target_exists(workflow: dict) -> None:
    called = set(re.findall(r"\bmake\s+([A-Za-z][\w-]*)", _runs(workflow)))
    assert {"venv", "repro", "pr-report", "check-repro"} <= called
    assert called <= _targets(), called - _targets()


def test_the_report_compares_with_the_base_branch(workflow: dict) -> None:
    assert "make pr-report BASE=origin/${{ github.base_ref }}" in _runs(workflow)


def test_every_module_and_script_called_exists(workflow: dict) -> None:
    text = _runs(workflow) + "\n" + (ROOT / "Makefile").read_text()
    modules = set(re.findall(r"-m\s+(reprolab(?:\.\w+)+|stages(?:\.\w+)+)", text))
    assert {"reprolab.release.report", "reprolab.release.promote", "reprolab.release.check"} <= (
        modules
    )
    for module in modules:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
    for script in re.findall(r"(?:^|\s)(\.?\.?/?[\w.-]+(?:/[\w.-]+)+\.(?:sh|py))\b", text):
        assert (ROOT / script).is_file(), script


def test_no_third_party_action_and_the_comment_uses_gh(workflow: dict) -> None:
    uses = [s["uses"] for s in _steps(workflow) if "uses" in s]
    assert all(u.startswith(FIRST_PARTY) for u in uses), uses
    assert not any("comment" in u or "cml" in u.lower() for u in uses)
    runs = _runs(workflow)
    assert re.search(r"\bgh (api|pr comment)\b", runs)
    assert "cml" not in runs.lower()


def test_the_check_job_reruns_then_compares(workflow: dict) -> None:
    job = next(j for j in workflow["jobs"].values() if "check-repro" in str(j["steps"]))
    runs = [s.get("run", "") for s in job["steps"]]
    rerun = next(i for i, r in enumerate(runs) if "make repro" in r)
    check = next(i for i, r in enumerate(runs) if "make check-repro" in r)
    assert rerun < check
