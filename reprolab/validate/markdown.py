"""Markdown tables for the reports a reviewer reads (metrics/report.md, pr-report.md)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any


def cell(value: Any, *, missing: str = "—") -> str:
    """A value as a table cell: numbers to 6 significant digits, booleans as pass/**FAIL**,
    ``None`` as ``missing``; pipes and newlines escaped so the row stays one row."""
    if value is None:
        return missing
    if isinstance(value, bool):
        return "pass" if value else "**FAIL**"
    if isinstance(value, int | float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: Callable[[Any], str] = cell,
) -> list[str]:
    """A markdown table, one line per element; ``fmt`` turns each value into its cell."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return lines
