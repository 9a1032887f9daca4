"""metrics/report.md: the review a pull request needs, from what validate judged.

A table of gates per section (value, threshold, passed), the forecast comparison, the
walk-forward folds, and four plots beside it in ``metrics/plots/``: the Mamba's
reliability against the oracle, the PINN's price error over moneyness x maturity, the CET
against its baselines, and every stage's time and memory (timing: not reproducible, which
is why the report is not cached).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reprolab.core.io import atomic_path, atomic_write_text
from reprolab.validate import markdown

PLOTS = {
    "reliability": "mamba_reliability.png",
    "pinn_error": "pinn_error_heatmap.png",
    "cet": "cet_pass_rates.png",
    "resources": "stage_resources.png",
}


def _fmt(value: Any) -> str:
    if isinstance(value, bool):  # a property (e.g. "oracle above the models"), not a verdict
        return "yes" if value else "no"
    return markdown.cell(value, missing="not measured")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A markdown table; an unmeasured figure says so."""
    return markdown.table(header, rows, _fmt)


def gates_table(gates: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = [
        (
            f"`{name}`",
            g["value"],
            g["threshold"],
            "pass" if g["passed"] else "**FAIL**",
            g["meaning"],
        )
        for name, g in gates.items()
    ]
    return table(("gate", "value", "threshold", "result", "what it means"), rows)


def _figure(plt: Any, path: Path, draw: Any, size: tuple[float, float]) -> None:
    fig, ax = plt.subplots(figsize=size)
    draw(fig, ax)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_plots(
    report: Mapping[str, Any],
    cet_baselines: Mapping[str, float],
    resources: Sequence[Mapping[str, Any]],
    out_dir: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    bins = report["mamba"]["reliability"]

    def reliability(fig: Any, ax: Any) -> None:
        pred = [b["predicted"] for b in bins]
        ax.plot(pred, [b["oracle"] for b in bins], "o-", label="oracle's probability")
        ax.plot(pred, [b["realised"] for b in bins], "s--", alpha=0.6, label="realised up-share")
        lo, hi = min(pred), max(pred)
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="calibrated")
        ax.set_xlabel("Mamba's predicted probability of up (decile mean)")
        ax.set_ylabel("probability of up")
        ax.set_title("Mamba reliability against the filter oracle (test split)")
        ax.legend()

    _figure(plt, out_dir / PLOTS["reliability"], reliability, (6.5, 4.5))

    grid = report["pinn"]["error_grid"]
    taus = list(dict.fromkeys(c["tau"] for c in grid))
    edges = sorted({c["moneyness_lo"] for c in grid})
    values = np.full((len(taus), len(edges)), np.nan)
    for c in grid:
        if c["max_abs_k"] is not None:
            values[taus.index(c["tau"]), edges.index(c["moneyness_lo"])] = c["max_abs_k"]

    def heatmap(fig: Any, ax: Any) -> None:
        image = ax.imshow(values, aspect="auto", cmap="viridis", origin="lower")
        ax.set_yticks(range(len(taus)), taus)
        ax.set_xticks(range(len(edges)), [f"{e:.2f}" for e in edges], rotation=45)
        ax.set_xlabel("moneyness S/K (bin start)")
        ax.set_ylabel("maturity")
        ax.set_title("PINN max |C - C_bs| / K, in-domain test split")
        fig.colorbar(image, ax=ax)

    _figure(plt, out_dir / PLOTS["pinn_error"], heatmap, (7, 4))

    def cet(fig: Any, ax: Any) -> None:
        names = list(cet_baselines)
        ax.bar(
            names,
            [cet_baselines[n] for n in names],
            color=["tab:gray"] * (len(names) - 1) + ["tab:blue"],
        )
        ax.set_ylabel("test pass rate")
        ax.set_ylim(0, 1.05)
        ax.set_title("Context engineering: the CET against its baselines")

    _figure(plt, out_dir / PLOTS["cet"], cet, (6, 4))

    def stages(fig: Any, ax: Any) -> None:
        names = [r["stage"] for r in resources]
        y = np.arange(len(names))
        ax.barh(y, [r["wall_s"] for r in resources], color="tab:blue")
        ax.set_yticks(y, names)
        ax.set_xlabel("wall seconds")
        twin = ax.twiny()
        twin.plot([r["peak_rss_mib"] for r in resources], y, "o", color="tab:red")
        twin.set_xlim(left=0)
        twin.set_xlabel("peak RSS (MiB, red)")
        ax.set_title("Stage time and memory (this run; timing, not a result)")

    _figure(plt, out_dir / PLOTS["resources"], stages, (8, 6))


def pinn_prices(pinn: Mapping[str, Any]) -> list[str]:
    """Calls and puts on the test split and on the fresh sample over the trained box (the
    puts' relative L2 is gated like the calls'), the worst fresh contract, and the QuantLib
    cross-check."""
    f, fresh = pinn["figures"], pinn["fresh_sample"]
    rows = [
        ("call, test split", f["price_rel_l2"], f["price_max_abs_k"], f["price_mean_abs_k"]),
        ("put, test split", f["put_price_rel_l2"], f["price_max_abs_k"], f["price_mean_abs_k"]),
        *(
            (
                f"{kind}, fresh sample ({fresh[kind]['rows']:,} contracts)",
                fresh[kind]["price_rel_l2"],
                fresh[kind]["price_max_abs_k"],
                fresh[kind]["price_mean_abs_k"],
            )
            for kind in ("call", "put")
        ),
    ]
    worst = fresh["call"]["worst"]
    q = pinn["quantlib"]
    return [
        "## PINN prices: calls and puts, test split and fresh sample (K = 1)",
        "",
        *table(("prices", "relative L2", "max abs / K", "mean abs / K"), rows),
        "",
        f"Largest fresh error at S/K {worst['moneyness']:.3f}, tau {worst['tau']:.3f}, "
        f"sigma {worst['sigma']:.3f}, r {worst['r']:.3f}. Puts have the calls' absolute "
        "errors (parity); their smaller prices make their relative error larger. QuantLib "
        f"on {q['rows']:,} of the fresh contracts: closed form within "
        f"{_fmt(q['closed_form_max_abs_k'])}, PINN within {_fmt(q['pinn_max_abs_k'])}.",
    ]


NA = "n/a"  # a timing that was not measured (no speed file, or no entry for the model)


def _pt(value: float) -> str:
    return f"{100 * value + 0.0:+.3f}"


def _interval_pt(m: Mapping[str, Any]) -> str:
    """A margin in points with its interval: ``+0.154 [+0.121, +0.187]``."""
    return f"{_pt(m['difference'])} [{_pt(m['ci95_low'])}, {_pt(m['ci95_high'])}]"


def _timing(times: Mapping[str, Any], key: str) -> Any:
    value = times.get(key)
    return NA if value is None else value


def _verdict(margin: Mapping[str, Any], where: str) -> list[str]:
    """The explicit sentence when the Mamba's margin interval lies wholly below zero."""
    if margin["ci95_high"] < 0:
        return ["", f"The best model {where} is {margin['best']}, not the Mamba."]
    return []


def forecast_comparison(
    mamba: Mapping[str, Any], timings: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Every model on the test windows, the Mamba first and then by expected accuracy: its
    accuracies, gap to the oracle, margin over the Mamba (paired, date blocks) and timings;
    then the Mamba's margin over the best comparator."""
    gaps, margins = mamba["oracle_gap"], mamba.get("margins_over_mamba", {})
    order = [
        "model",
        *sorted((n for n in gaps if n != "model"), key=lambda n: -gaps[n]["expected_accuracy"]),
    ]
    rows = [
        (
            "**mamba**" if n == "model" else n,
            gaps[n]["accuracy"],
            gaps[n]["expected_accuracy"],
            _pt(gaps[n]["expected_accuracy_minus_oracle"]),
            "—" if n == "model" else _interval_pt(margins[n]) if n in margins else None,
            _timing(timings.get(n, {}), "train_seconds"),
            _timing(timings.get(n, {}), "inference_ms_per_1000"),
        )
        for n in order
    ]
    header = (
        "model",
        "accuracy",
        "expected accuracy",
        "expected gap to the oracle (pt)",
        "margin over the Mamba (pt) [95 % interval]",
        "training s",
        "inference ms / 1,000 windows",
    )
    block = mamba.get("bootstrap", {}).get("block", "window")
    lines = ["## Forecast comparison (test split, the same windows)", "", *table(header, rows)]
    lines += [
        "",
        "Margins are expected accuracy (under the oracle's probabilities) minus the Mamba's, "
        f"with a paired bootstrap 95 % interval; block = {block}. Timings are the training "
        "stage's (metrics/train/mamba/speed.json: not reproducible, never in validate.json).",
    ]
    margin = mamba.get("margin_over_best_comparator")
    if margin:
        lines += [
            "",
            f"The best comparator is {margin['best']} (highest expected accuracy on these "
            f"windows); the Mamba's margin over it is {_pt(margin['difference'])} pt, paired "
            f"95 % interval [{_pt(margin['ci95_low'])}, {_pt(margin['ci95_high'])}] pt "
            f"(block = {block}).",
            *_verdict(margin, "on the test split"),
        ]
    return lines


def walk_forward_section(wf: Mapping[str, Any], seconds: Mapping[str, float]) -> list[str]:
    """Every walk-forward model per fold and pooled (expected gap to the oracle), its
    training time over the folds, and the Mamba's pooled margin over the best of the rest."""
    models = sorted({m for fold in wf["folds"].values() for m in fold})
    models = [m for m in models if m == "mamba"] + [m for m in models if m != "mamba"]
    rows = [
        (fold, *(_gap(wf["folds"][fold].get(m)) for m in models)) for fold in sorted(wf["folds"])
    ]
    rows.append(("pooled", *(_gap(wf["pooled"].get(m)) for m in models)))
    times = ", ".join(f"{m} {_fmt(_timing(seconds, m))}" for m in models)
    lines = [
        "## Walk-forward (expected gap to the oracle, pt)",
        "",
        *table(("fold", *models), rows),
        "",
        f"Training seconds over all folds (metrics/walk_forward/speed.json): {times}.",
    ]
    margin = wf.get("margin_over_best_comparator")
    if margin:
        block = margin.get("block", "window")
        lines += [
            "",
            f"Pooled over the folds, the Mamba's margin over the best walk-forward comparator "
            f"({margin['best']}, by pooled expected accuracy) is {_pt(margin['difference'])} pt, "
            f"paired 95 % interval [{_pt(margin['ci95_low'])}, {_pt(margin['ci95_high'])}] pt "
            f"on the same {margin['windows']:,} (symbol, date) rows (block = {block}).",
            *_verdict(margin, "over the walk-forward folds"),
        ]
    return lines


def _gap(gap: Mapping[str, Any] | None) -> str | None:
    return None if gap is None else _pt(gap["expected_accuracy_minus_oracle"])


def render(
    report: Mapping[str, Any],
    sections: Sequence[str],
    cet_baselines: Mapping[str, float],
    plots_dir: str,
    timings: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The markdown text of the report (``timings``: :func:`steps.model_timings`, shown in
    the forecast comparison only)."""
    failed = report["failed"]
    verdict = (
        "**Every gate passed.**"
        if not failed
        else f"**{len(failed)} gate(s) failed:** " + ", ".join(f"`{f}`" for f in failed)
    )
    lines = ["# Validation report", "", verdict, ""]
    for section in sections:
        lines += [f"## {section}", "", *gates_table(report[section]["goals"]), ""]
    timings = timings or {}
    lines += forecast_comparison(report["mamba"], timings.get("test", {}))
    lines += ["", *walk_forward_section(report["walk_forward"], timings.get("walk_forward", {}))]
    lines += ["", *pinn_prices(report["pinn"])]
    lines += ["", "## CET against its baselines (test pass rate)", ""]
    lines += table(("context", "pass rate"), list(cet_baselines.items()))
    lines += ["", "## Plots", ""]
    captions = {
        "reliability": "Mamba reliability against the oracle",
        "pinn_error": "PINN price error over moneyness x maturity",
        "cet": "CET pass rates by baseline",
        "resources": "Stage time and memory",
    }
    lines += [f"![{captions[k]}]({plots_dir}/{name})" for k, name in PLOTS.items()]
    return "\n".join(lines) + "\n"


def write_report(
    report: Mapping[str, Any],
    sections: Sequence[str],
    cet_baselines: Mapping[str, float],
    resources: Sequence[Mapping[str, Any]],
    path: Path,
    plots: Path,
    timings: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    write_plots(report, cet_baselines, resources, plots)
    rel = Path(os.path.relpath(plots, path.parent)).as_posix()
    atomic_write_text(path, render(report, sections, cet_baselines, rel, timings))
