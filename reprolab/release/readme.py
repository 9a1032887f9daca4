"""The README's measured times, regenerated from what the runs recorded (never typed by hand).

Every stage writes its wall time and peak memory to ``metrics/resources/<stage>.json``;
``make test`` run with ``REPROLAB_RECORD_SUITE=1`` writes the suite's to
``metrics/resources/test_suite.json``. This module renders them as the table between the
README's ``measured-times`` markers; ``tests/unit/test_readme_times.py`` fails when the
committed text and the committed figures disagree.

    python -m reprolab.release.readme            # print the table
    python -m reprolab.release.readme --write    # rewrite it in README.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reprolab.core import paths, registry
from reprolab.core.io import atomic_write_text, read_json

START = "<!-- measured-times:start (python -m reprolab.release.readme --write) -->"
END = "<!-- measured-times:end -->"
SUITE = paths.RESOURCES / "test_suite.json"
CLOSING = ("validate", "benchmark")


def _resources(root: Path, stage: str) -> dict[str, Any] | None:
    path = root / paths.RESOURCES / f"{stage}.json"
    return read_json(path) if path.exists() else None


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def times_table(root: Path = Path(".")) -> str:
    """The Markdown table of measured times, from ``root``'s metrics."""
    data_stages = [f"{s}_{d}" for s in registry.DATA_STEPS for d in registry.DATASETS]
    groups: list[tuple[str, list[str]]] = [
        (f"data stages (all {len(data_stages)})", data_stages),
        *((f"`train@{m}`", [f"train_{m}"]) for m in registry.MODELS),
        ("`walk_forward`", ["walk_forward"]),
        *((f"`{s}`", [s]) for s in CLOSING),
    ]
    lines = ["| what | wall time | peak memory |", "|---|---|---|"]
    total, missing = 0.0, []
    for label, names in groups:
        found = [r for r in (_resources(root, n) for n in names) if r is not None]
        if len(found) < len(names):
            missing.append(label)
            lines.append(f"| {label} | not measured | not measured |")
            continue
        wall = sum(float(r["wall_s"]) for r in found)
        peak = max(float(r["peak_rss_mib"]) for r in found)
        total += wall
        lines.append(f"| {label} | {_minutes(wall)} | {peak:,.0f} MiB |")
    note = f" ({', '.join(missing)} not measured)" if missing else ""
    lines.append(
        f"| **`make repro`**: every stage above, one after another{note} | {_minutes(total)} | |"
    )
    suite = root / SUITE
    if suite.exists():
        s = read_json(suite)
        lines.append(f"| **`make test`**: {s['tests']} tests | {_minutes(float(s['wall_s']))} | |")
    else:
        lines.append("| **`make test`** | not measured | |")
    return "\n".join(lines) + "\n"


def replaced(text: str, table: str) -> str:
    """``text`` with the table between the markers replaced by ``table``."""
    if START not in text or END not in text:
        raise ValueError(f"README.md: the markers {START!r} and {END!r} are missing")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprolab.release.readme")
    parser.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args(argv)
    table = times_table()
    if not args.write:
        print(table, end="")
        return 0
    readme = Path("README.md")
    atomic_write_text(readme, replaced(readme.read_text(encoding="utf-8"), table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
