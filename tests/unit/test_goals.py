"""The one goals evaluator: parsing, judging, and the goals params.yaml declares."""

from __future__ import annotations

import math

import pytest

from reprolab.core.config import parse_params
from reprolab.core.errors import ValidationError
from reprolab.core.goals import Goal, evaluate, failed, gate_line, goals_of
from tests.tiny import params_dict, repo_params


def test_bounds_are_inclusive_and_point_the_stated_way() -> None:
    upper, lower = Goal.parse("<= 5e-4"), Goal.parse(">= 0.95")
    assert upper == Goal("<=", 5e-4) and lower == Goal(">=", 0.95)
    assert upper.met(5e-4) and not upper.met(5.01e-4)
    assert lower.met(0.95) and not lower.met(0.949)


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_a_figure_not_measured_or_not_finite_never_meets_its_goal(value: float | None) -> None:
    assert not Goal.parse("<= 1").met(value)
    assert not Goal.parse(">= -1").met(value)


def test_evaluate_reports_every_goal_even_when_the_figure_is_missing() -> None:
    goals = {"a": Goal.parse("<= 1"), "b": Goal.parse(">= 2"), "c": Goal.parse("<= 3")}
    report = evaluate(goals, {"a": 0.5, "b": 1.0})
    assert list(report) == ["a", "b", "c"]
    assert report["a"] == {"value": 0.5, "threshold": "<= 1", "passed": True, "meaning": ""}
    assert report["c"] == {"value": None, "threshold": "<= 3", "passed": False, "meaning": ""}
    assert failed(report) == ["b", "c"]


def test_a_gate_is_one_line_with_its_value_threshold_and_meaning() -> None:
    gate = evaluate({"x": Goal.parse("<= 1", meaning="errors per row")}, {"x": 2.5})["x"]
    assert gate_line("data.x", gate) == "data.x = 2.5, threshold <= 1: errors per row"
    missing = evaluate({"x": Goal.parse(">= 1")}, {})["x"]
    assert gate_line("m.x", missing) == "m.x = not measured, threshold >= 1"


def test_every_gate_in_params_states_what_it_means() -> None:
    validate = repo_params().validate
    for section in ("data", "resources", "mamba", "pinn", "cet", "benchmark"):
        for name, goal in goals_of(getattr(validate, section)).items():
            assert goal.meaning, f"validate.{section}.{name} has no meaning"


@pytest.mark.parametrize("text", ["< 1", "<=1", "<= one", "<= nan", "<= inf", "", "1e-4"])
def test_a_malformed_goal_in_params_is_one_line_naming_the_key(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_params(params_dict(validate={"pinn": {"price_max_abs_k": text}}))
    message = str(info.value)
    assert "validate.pinn.price_max_abs_k" in message and "\n" not in message


def test_goals_follow_params_and_keep_their_declared_order() -> None:
    params = parse_params(params_dict(validate={"cet": {"pass_rate": ">= 0.5"}}))
    goals = goals_of(params.validate.cet)
    assert list(goals) == ["pass_rate", "compression", "margin_over_heuristic", "gold_pass_rate"]
    assert goals["pass_rate"] == Goal(">=", 0.5)
