"""The one goals evaluator. A goal is a bound on a reported figure, written in params.yaml
(``validate.<model>.<figure>: "<= 5e-4"``) and judged the same way everywhere.

A figure that was not measured (``None``) or is not finite never meets its goal.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reprolab.core.errors import ValidationError

_OPS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Goal:
    op: str  # "<=" (an upper bound) or ">=" (a lower bound)
    bound: float
    meaning: str = dataclasses.field(default="", compare=False)  # what passing says

    @classmethod
    def parse(cls, text: str, where: str = "goal", meaning: str = "") -> Goal:
        """``"<= 5e-4"`` -> Goal("<=", 5e-4); anything else is one clear ValidationError."""
        op, _, number = str(text).strip().partition(" ")
        try:
            bound = float(number)
        except ValueError:
            bound = math.nan
        if op not in _OPS or not math.isfinite(bound):
            raise ValidationError(
                f"params.yaml: {where} = {text!r}: expected a goal '<= number' or '>= number'"
            )
        return cls(op, bound, meaning)

    def met(self, value: float | None) -> bool:
        if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
            return False
        return bool(_OPS[self.op](float(value), self.bound))

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


def goals_of(section: Any) -> dict[str, Goal]:
    """The goals of a params section (a dataclass of goal strings), in declaration order,
    each with the meaning its schema field states."""
    return {
        f.name: Goal.parse(getattr(section, f.name), f.name, f.metadata.get("meaning", ""))
        for f in dataclasses.fields(section)
    }


def evaluate(
    goals: Mapping[str, Goal], figures: Mapping[str, float | None]
) -> dict[str, dict[str, Any]]:
    """``{figure: {value, threshold, passed, meaning}}`` for every goal, measured or not."""
    out = {}
    for name, goal in goals.items():
        value = figures.get(name)
        out[name] = {
            "value": value,
            "threshold": str(goal),
            "passed": goal.met(value),
            "meaning": goal.meaning,
        }
    return out


def failed(report: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The names of the goals in an :func:`evaluate` report that did not pass."""
    return [name for name, r in report.items() if not r["passed"]]


def gate_line(name: str, gate: Mapping[str, Any]) -> str:
    """One line for a gate: its name, its value, its threshold and what it means."""
    value = gate["value"]
    shown = "not measured" if value is None else f"{value:.6g}"
    meaning = f": {gate['meaning']}" if gate["meaning"] else ""
    return f"{name} = {shown}, threshold {gate['threshold']}{meaning}"
