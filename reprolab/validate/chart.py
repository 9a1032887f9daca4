"""The Mamba's comparison chart: every model's expected-accuracy gap to the filter oracle
(and, in the table, its paired date-block margin over the Mamba).

Two forms of the same rows: a JSON table that ``dvc plots`` draws as a bar chart (declared
in dvc.yaml) and a PNG for readers without DVC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reprolab.core.io import atomic_path, write_json

MARGIN_COLUMNS = ("margin_over_mamba_pt", "margin_ci95_low_pt", "margin_ci95_high_pt")


def _pt(value: float) -> float:
    return round(100 * value, 3) + 0.0  # + 0.0: never a negative zero


def comparison_rows(
    gaps: dict[str, dict[str, Any]], margins: dict[str, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One row per model (every file validate found, the Mamba's as ``model``), best first:
    gap in points (expected and realised), accuracy and, given ``margins`` (per comparator
    its paired interval of expected accuracy minus the Mamba's), the margin over the Mamba
    in points with its 95% interval (the Mamba's own row: 0)."""
    margins = margins or {}
    rows = []
    for name, g in gaps.items():
        row = {
            "model": "mamba" if name == "model" else name,
            "expected_gap_pt": _pt(g["expected_accuracy_minus_oracle"]),
            "realised_gap_pt": _pt(g["accuracy_minus_oracle"]),
            "accuracy": round(g["accuracy"], 4),
        }
        if name == "model" and margins:
            row |= dict.fromkeys(MARGIN_COLUMNS, 0.0)
        elif name in margins:
            m = margins[name]
            values = (m["difference"], m["ci95_low"], m["ci95_high"])
            row |= {k: _pt(v) for k, v in zip(MARGIN_COLUMNS, values, strict=True)}
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["expected_gap_pt"], r["model"]))


def write_comparison(rows: list[dict[str, Any]], table: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_json(table, rows)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    names = [r["model"] for r in rows][::-1]
    values = [r["expected_gap_pt"] for r in rows][::-1]
    colours = ["tab:blue" if n == "mamba" else "tab:gray" for n in names]
    ax.barh(names, values, color=colours)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_xlabel("expected accuracy minus the filter oracle's (points, test split)")
    ax.set_title("Direction forecast: gap to the ceiling (0 = the oracle)")
    for y, v in enumerate(values):
        ax.annotate(
            f"{v:+.2f}",
            (v, y),
            xytext=(-4 if v < 0 else 4, 0),
            textcoords="offset points",
            va="center",
            ha="right" if v < 0 else "left",
        )
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
