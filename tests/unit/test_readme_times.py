"""The README's measured times are regenerated from metrics/, never typed by hand: the
committed table is what ``python -m reprolab.release.readme`` renders from the committed
figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from reprolab.core.io import write_json
from reprolab.release.readme import END, START, replaced, times_table

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_table_is_the_committed_figures() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert replaced(text, times_table(ROOT)) == text, (
        "README.md's measured times differ from metrics/resources: run "
        "`python -m reprolab.release.readme --write`"
    )


def test_a_changed_figure_changes_the_table(tmp_path: Path) -> None:
    resources = tmp_path / "metrics" / "resources"
    resources.mkdir(parents=True)
    write_json(
        resources / "train_pinn.json",
        {"stage": "train@pinn", "wall_s": 300.0, "peak_rss_mib": 1000.0},
    )
    table = times_table(tmp_path)
    assert "| `train@pinn` | 5.0 min | 1,000 MiB |" in table
    assert "| `train@mamba` | not measured | not measured |" in table
    write_json(resources / "test_suite.json", {"stage": "make test", "tests": 12, "wall_s": 90.0})
    assert "| **`make test`**: 12 tests | 1.5 min | |" in times_table(tmp_path)


def test_the_markers_are_required() -> None:
    with pytest.raises(ValueError, match="markers"):
        replaced("no table here", "| x |\n")
    assert replaced(f"a\n{START}\nold\n{END}\nb", "new\n") == f"a\n{START}\nnew\n{END}\nb"
