"""``make pr-report BASE=<rev>``: what a pull request did, for a reviewer, in pr-report.md.

Compares the base revision with the workspace (in CI: the pull request's checkout): the
validate gates of both (those that changed state first), ``dvc params diff``, ``dvc metrics
diff`` with time and memory figures apart (they are noise, not results), and the plots of
both revisions rendered to files by ``dvc plots diff``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reprolab.core import paths
from reprolab.core.io import atomic_write_text
from reprolab.release import gates
from reprolab.release.common import cli, dvc, git, read_at, resolve
from reprolab.release.timing import is_timing
from reprolab.validate.markdown import cell, table

REPORT = Path("pr-report.md")
PLOTS = Path("pr-report-plots")
VALIDATE = paths.VALIDATE.as_posix()
# Row limits keep a pull-request comment readable (GitHub caps a comment at 65,536 chars).
MAX_ROWS = 60


Change = tuple[str, str, Any, Any]  # (file, key, old, new)


def split_metrics(diff: Mapping[str, Mapping[str, Any]]) -> tuple[list[Change], list[Change]]:
    """``dvc metrics diff --json`` as (results, timing) rows, sorted by file and key.

    Gate descriptions (``*.meaning``) are prose, not metrics: left out.
    """
    results: list[Change] = []
    timing: list[Change] = []
    for path in sorted(diff):
        for key in sorted(diff[path]):
            if key.endswith(".meaning"):
                continue
            change = diff[path][key]
            row = (path, key, change.get("old"), change.get("new"))
            (timing if is_timing(path, key) else results).append(row)
    return results, timing


def metrics_table(rows: list[Change]) -> str:
    if not rows:
        return "No change.\n"
    cells = []
    for path, key, old, new in rows[:MAX_ROWS]:
        numbers = [v for v in (old, new) if isinstance(v, int | float) and not isinstance(v, bool)]
        cells.append((path, key, old, new, new - old if len(numbers) == 2 else ""))
    lines = table(("file", "metric", "base", "head", "change"), cells)
    if len(rows) > MAX_ROWS:
        lines.append(f"\n… and {len(rows) - MAX_ROWS} more (`dvc metrics diff <base>`).")
    return "\n".join(lines) + "\n"


def _gate_rows(rows: list[tuple[str, Any, Any]], changed: list[str]) -> list[str]:
    cells = []
    for name, b, h in rows:
        mark = "**" if name in changed else ""
        value = f"{cell(b and b.get('value'))} → {cell(h and h.get('value'))}"
        bt, ht = (b or {}).get("threshold"), (h or {}).get("threshold")
        threshold = f"{bt} → {ht}" if bt and ht and bt != ht else (ht or bt or "")
        cells.append(
            (f"{mark}{name}{mark}", b and b.get("passed"), h and h.get("passed"), value, threshold)
        )
    return table(("gate", "base", "head", "value (base → head)", "threshold"), cells)


def gates_section(base: Mapping[str, Any] | None, head: Mapping[str, Any] | None) -> str:
    """Both revisions' verdicts, the gates that changed state, then the others folded."""
    changed = gates.changed_state(base, head)
    rows = gates.compare(base, head)
    out = [
        f"- base: {gates.summary(base)}",
        f"- head: {gates.summary(head)}",
        f"- changed state: {', '.join(changed) if changed else 'none'}",
        "",
    ]
    if changed:
        out += [*_gate_rows(rows[: len(changed)], changed), ""]
    out += [
        f"<details><summary>{len(rows) - len(changed)} gate(s) in the same state</summary>",
        "",
        *_gate_rows(rows[len(changed) :], changed),
        "",
        "</details>",
    ]
    return "\n".join(out) + "\n"


def plots_section(base: str, out: Path) -> str:
    """Render ``dvc plots diff <base>`` to ``out`` and list what a reviewer can open."""
    if out.is_dir() and (out / "index.html").exists():
        shutil.rmtree(out)  # a previous render: stale images must not be listed
    dvc(["plots", "diff", base, "-o", str(out)])
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    lines = [f"Rendered by `dvc plots diff {base} -o {out}` (both revisions):", ""]
    if (out / "index.html").exists():
        lines.append(f"- [{out}/index.html]({out}/index.html): every plot, the curves overlaid")
    for f in files:
        if f != "index.html":
            lines.append(f"- [{out}/{f}]({out}/{f})")
    return "\n".join(lines) + "\n"


def build(base: str, plots: Path | None = PLOTS) -> str:
    """The report comparing ``base`` with the workspace, as markdown."""
    sha = resolve(base)  # a bad revision is one clear line before dvc is asked anything
    head = git(["rev-parse", "--short", "HEAD"]).stdout.strip() or "workspace"
    params = dvc(["params", "diff", base, "--md"]).strip()
    diff = json.loads(dvc(["metrics", "diff", base, "--json"]) or "{}")
    results, timing = split_metrics(diff)
    sections = [
        f"# Pull-request report: {base} ({sha[:7]}) → workspace (HEAD {head})\n",
        "## Validate gates\n",
        gates_section(read_at(sha, VALIDATE), read_at(None, VALIDATE)),
        f"## Params (`dvc params diff {base}`)\n",
        (params + "\n") if params else "No params changed.\n",
        f"## Metrics (`dvc metrics diff {base}`, timing and resources apart)\n",
        metrics_table(results),
        "## Timing and resources (noise, not results)\n",
        "<details><summary>"
        f"{len(timing)} changed speed or memory figure(s)</summary>\n\n"
        f"{metrics_table(timing)}\n</details>\n",
    ]
    if plots is not None:
        sections += ["## Plots\n", plots_section(base, plots)]
    return "\n".join(sections)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprolab.release.report")
    parser.add_argument("--base", default="main", help="the revision to compare with")
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--plots", type=Path, default=PLOTS, help="where the plots go")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    text = build(args.base, None if args.no_plots else args.plots)
    atomic_write_text(args.out, text)
    print(f"pr-report: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(main))
