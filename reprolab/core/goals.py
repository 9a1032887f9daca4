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

    @classmethod
    def parse(cls, text: str, where: str = "goal") -> Goal:
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
        return cls(op, bound)

    def met(self, value: float | None) -> bool:
        if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
            return False
        return bool(_OPS[self.op](float(value), self.bound))

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


def goals_of(section: Any) -> dict[str, Goal]:
    """The goals of a params section (a dataclass of goal strings), in declaration order."""
    return {
        f.name: Goal.parse(getattr(section, f.name), f.name) for f in dataclasses.fields(section)
    }


def evaluate(
    goals: Mapping[str, Goal], figures: Mapping[str, float | None]
) -> dict[str, dict[str, Any]]:
    """``{figure: {goal, reached, met}}`` for every goal, measured or not."""
    out = {}
    for name, goal in goals.items():
        value = figures.get(name)
        out[name] = {"goal": str(goal), "reached": value, "met": goal.met(value)}
    return out


def failed(report: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The names of the goals in an :func:`evaluate` report that were not met."""
    return [name for name, r in report.items() if not r["met"]]
