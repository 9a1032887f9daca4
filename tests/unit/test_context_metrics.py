"""Requirement precision/recall, exact match and compression of engineered contexts."""

from __future__ import annotations

import pytest

from reprolab.models.cet.metrics import context_report, requirement_scores

GOLD = "keep items greater than 5\nsort ascending\nreturn the sum"


@pytest.mark.parametrize(
    ("context", "precision", "recall", "exact"),
    [
        (GOLD, 1.0, 1.0, 1.0),
        ("sort ascending\nkeep items greater than 5\nreturn the sum", 1.0, 1.0, 0.0),
        ("keep items greater than 5\nreturn the sum", 1.0, 2 / 3, 0.0),
        (GOLD + "\nreverse the list", 0.75, 1.0, 0.0),
        ("keep items greater than 3\nsort ascending\nreturn the sum", 2 / 3, 2 / 3, 0.0),
        ("", 0.0, 0.0, 0.0),
        ("sort ascending\nsort ascending", 0.5, 1 / 3, 0.0),  # a duplicate counts once
    ],
)
def test_requirement_scores(context: str, precision: float, recall: float, exact: float) -> None:
    s = requirement_scores(context, GOLD)
    assert s == pytest.approx({"precision": precision, "recall": recall, "exact_match": exact})


def test_report_averages_programs_and_compresses_by_tokens() -> None:
    r = context_report([GOLD, ""], [GOLD, GOLD], [1.0, 0.5], [10, 0], [100, 60])
    assert r["programs"] == 2 and r["pass_rate"] == 0.75 and r["all_tests_pass"] == 0.5
    assert r["exact_match"] == 0.5 and r["compression"] == round(10 / 160, 4)
