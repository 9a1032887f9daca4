"""validate: judge the data, every trained model and the resources against the gates in
``params.validate``.

The only stage after training that reads ``data/truth`` (the Mamba's filter oracle). It
writes ``metrics/validate.json``: per section (data, resources, mamba, pinn, cet) the
figures judged and ``{value, threshold, passed, meaning}`` per gate, and the list of gates
that failed. Under ``validate.strict`` a failed gate fails the stage, one line per gate.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.errors import GateError
from reprolab.core.goals import evaluate, failed, gate_line, goals_of
from reprolab.core.io import read_json, rounded, write_json
from reprolab.core.registry import GATE_SECTIONS
from reprolab.core.resources import StageResources
from reprolab.core.seeding import rng
from reprolab.core.stage import JUDGED_STAGES, stage_resources
from reprolab.core.tables import read_parquet
from reprolab.validate.cet import cet_judgement
from reprolab.validate.chart import comparison_rows, write_comparison
from reprolab.validate.data import data_judgement
from reprolab.validate.oracle import (
    BLOCK,
    above_oracle,
    oracle_gap,
    paired_interval,
    reliability,
    window_scores,
)
from reprolab.validate.pinn import pinn_judgement
from reprolab.validate.report import write_report

BOOTSTRAP = 2000  # resamples of the paired intervals (date blocks: oracle.BLOCK)
WALK_FORWARD_MAMBA = "mamba"  # the Mamba's rows in the walk-forward predictions
# Training and inference times (never in validate.json: they differ run to run).
SPEED = paths.train_metrics("mamba") / "speed.json"
WALK_FORWARD_SPEED = paths.METRICS / "walk_forward" / "speed.json"
REPORT = paths.METRICS / "report.md"  # the review a pull request reads
SECTIONS = GATE_SECTIONS  # the gated sections, in order


def _negated(interval: dict[str, Any]) -> dict[str, Any]:
    """The interval of the opposite difference (``0.0 -``: never a negative zero)."""
    return {
        **interval,
        "difference": 0.0 - interval["difference"],
        "ci95_low": 0.0 - interval["ci95_high"],
        "ci95_high": 0.0 - interval["ci95_low"],
    }


def mamba_judgement(seed: int) -> dict[str, Any]:
    """The Mamba (``model``) and every comparator against the filter oracle on the same test
    windows: the gaps, the leakage alarm per model, each comparator's paired margin over the
    Mamba and the Mamba's margin over the best comparator (by expected accuracy), every
    interval over date blocks (:data:`BLOCK`)."""
    labels = read_parquet(paths.features("markets") / "windows" / "test.parquet")
    labels = labels.loc[labels["copy"] == 0, ["symbol", "date", "label"]]
    dates = labels["date"].to_numpy()  # window_scores keeps the labels' order
    truth = read_parquet(paths.truth("markets"), columns=["symbol", "date", "oracle_p_up"])
    model_dir = paths.model_dir("mamba")
    files = {"model": model_dir / "predictions.parquet"}
    for path in sorted((model_dir / "comparators").glob("*_predictions.parquet")):
        files[path.name.removesuffix("_predictions.parquet")] = path
    gaps, leakage, scores = {}, {}, {}
    for name, path in files.items():
        predictions = read_parquet(path, sealed=False)  # a model's output: no manifest
        if name == "model":
            calibration = reliability(predictions, labels, truth)
        gaps[name] = oracle_gap(predictions, labels, truth)
        scores[name] = window_scores(predictions, labels, truth)
        leakage[name] = above_oracle(scores[name], dates, BOOTSTRAP, rng(seed, "validate", name))
    others = [n for n in gaps if n != "model"]
    over_mamba = {
        n: paired_interval(
            scores[n]["expected"] - scores["model"]["expected"],
            dates,
            BOOTSTRAP,
            rng(seed, "validate", "margin", n),
        )
        for n in others
    }
    best = max(others, key=lambda n: gaps[n]["expected_accuracy"]) if others else None
    margin = None
    if best is not None:  # the Mamba minus the best: the same resamples as its row
        margin = {"best": best, **_negated(over_mamba[best]), "block": BLOCK}
    figures = {
        "expected_accuracy_minus_oracle": gaps["model"]["expected_accuracy_minus_oracle"],
        **_margin_figures("margin_over_best_comparator", margin),
        "models_above_oracle": sum(v["alarm"] for v in leakage.values()),
    }
    return {
        "bootstrap": {"block": BLOCK, "resamples": BOOTSTRAP, "level": 0.95},
        "oracle_gap": gaps,
        "above_oracle": leakage,
        "margins_over_mamba": over_mamba,
        "margin_over_best_comparator": margin,
        "reliability": calibration,
        "figures": figures,
    }


def _margin_figures(name: str, margin: dict[str, Any] | None) -> dict[str, float | None]:
    """A margin and its interval as figures (``None``, not measured, without a rival)."""
    return {
        name: None if margin is None else margin["difference"],
        f"{name}_ci95_low": None if margin is None else margin["ci95_low"],
        f"{name}_ci95_high": None if margin is None else margin["ci95_high"],
    }


def walk_forward_judgement(seed: int) -> dict[str, Any]:
    """The walk-forward predictions against the oracle: per fold and pooled, per model, and
    the Mamba's pooled margin over the best other model (by pooled expected accuracy), paired
    on the same (symbol, date) rows, its interval over date blocks."""
    truth = read_parquet(paths.truth("markets"), columns=["symbol", "date", "oracle_p_up"])
    feats = paths.features("markets")
    labels = pd.concat(
        [read_parquet(feats / "windows" / f"{s}.parquet") for s in paths.SPLITS], ignore_index=True
    )
    labels = labels.loc[labels["copy"] == 0, ["symbol", "date", "label"]]
    predictions = read_parquet(
        paths.model_dir("mamba_walk_forward") / "predictions.parquet", sealed=False
    )
    out: dict[str, Any] = {"folds": {}, "pooled": {}}
    for (fold, model), part in predictions.groupby(["fold", "model"], sort=True):
        keys = part[["symbol", "date"]]
        mine = labels.merge(keys, on=["symbol", "date"], how="inner")
        out["folds"].setdefault(f"fold_{fold}", {})[model] = oracle_gap(part, mine, truth)
    for model, part in predictions.groupby("model", sort=True):  # test blocks are disjoint
        mine = labels.merge(part[["symbol", "date"]], on=["symbol", "date"], how="inner")
        out["pooled"][model] = oracle_gap(part, mine, truth)
    others = [m for m in out["pooled"] if m != WALK_FORWARD_MAMBA]
    margin = None
    if WALK_FORWARD_MAMBA in out["pooled"] and others:
        best = max(others, key=lambda m: out["pooled"][m]["expected_accuracy"])
        own = {m: predictions.loc[predictions["model"] == m] for m in (WALK_FORWARD_MAMBA, best)}
        paired = labels
        for part in own.values():
            paired = paired.merge(part[["symbol", "date"]], on=["symbol", "date"], how="inner")
        if len(paired):
            mamba, rival = (window_scores(part, paired, truth)["expected"] for part in own.values())
            gen = rng(seed, "validate", "walk_forward_margin")
            interval = paired_interval(mamba - rival, paired["date"].to_numpy(), BOOTSTRAP, gen)
            margin = {"best": best, "windows": len(paired), **interval, "block": BLOCK}
    out["margin_over_best_comparator"] = margin
    out["bootstrap"] = {"block": BLOCK, "resamples": BOOTSTRAP, "level": 0.95}
    return out


def walk_forward_figures(walk_forward: dict[str, Any]) -> dict[str, float | None]:
    """The walk-forward margin as figures of the ``mamba`` section (its gates live there)."""
    return _margin_figures("walk_forward_margin", walk_forward["margin_over_best_comparator"])


def resources_judgement(budget_mb: int) -> tuple[dict[str, Any], list[str]]:
    """The count of stages over the memory budget (a stage with no resource file counts),
    and a line per such stage (printed, not written: peak RSS varies run to run, so only
    the count goes into validate.json)."""
    over = []
    for stage in JUDGED_STAGES:
        path = paths.RESOURCES / f"{stage}.json"
        peak = read_json(path).get("peak_rss_mib") if path.exists() else None
        if peak is None:
            over.append(f"{stage}: no peak RSS in {path}")
        elif peak > budget_mb:
            over.append(f"{stage}: peak RSS {peak:.0f} MiB over {budget_mb} MiB")
    return {"figures": {"stages_over_memory_budget": len(over)}}, over


def cet_baselines(report: dict[str, Any]) -> dict[str, float | None]:
    """Test pass rates of the contexts' baselines and of the CET, as validate scored them."""
    scores = report["cet"]["test"]
    order = ("none", "raw", "heuristic", "gold", "cet")
    return {k: scores[k]["pass_rate"] if k in scores else None for k in order}


def judge(params: Params) -> dict[str, Any]:
    """Every section's figures and gates."""
    return judged(params)[0]


def judged(params: Params) -> tuple[dict[str, Any], list[str]]:
    """Every section's figures and gates, and a line per stage over the memory budget."""
    report: dict[str, Any] = {}
    data = data_judgement(params.seed, params.markets.split.embargo, params.markets.features.warmup)
    report["data"] = {**data, "goals": evaluate(goals_of(params.validate.data), data["figures"])}
    resources, over = resources_judgement(params.resources.memory_budget_mb)
    report["resources"] = {
        **resources,
        "goals": evaluate(goals_of(params.validate.resources), resources["figures"]),
    }
    mamba = mamba_judgement(params.seed)
    walk_forward = walk_forward_judgement(params.seed)
    mamba["figures"].update(walk_forward_figures(walk_forward))
    report["mamba"] = {
        **mamba,
        "goals": evaluate(goals_of(params.validate.mamba), mamba["figures"]),
    }
    report["walk_forward"] = walk_forward
    v = params.validate
    pinn = pinn_judgement(params.seed, v.pinn_fresh_contracts, v.pinn_quantlib_contracts)
    report["pinn"] = {**pinn, "goals": evaluate(goals_of(params.validate.pinn), pinn["figures"])}
    cet = cet_judgement(params)
    report["cet"] = {**cet, "goals": evaluate(goals_of(params.validate.cet), cet["figures"])}
    report["failed"] = [f"{m}.{g}" for m in SECTIONS for g in failed(report[m]["goals"])]
    return report, over


def _entry(path: Path, key: str) -> dict[str, Any]:
    """``key`` of a JSON file, or nothing where the file or the key is missing."""
    data = read_json(path) if path.exists() else {}
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) else None


def model_timings(
    speed: Path = SPEED, walk_forward_speed: Path = WALK_FORWARD_SPEED
) -> dict[str, dict[str, Any]]:
    """The report's timings (never validate.json's): ``test``, per model of the test-split
    comparison (the Mamba as ``model``) its ``train_seconds`` and ``inference_ms_per_1000``
    (``models`` of the Mamba's speed.json); ``walk_forward``, per walk-forward model its
    training seconds summed over the folds (``seconds``: ``fold_<k>_<model>``). A missing
    file, model or value is absent (the report shows n/a)."""
    test: dict[str, dict[str, float]] = {}
    for name, times in _entry(speed, "models").items():
        if isinstance(times, dict):
            key = "model" if name == WALK_FORWARD_MAMBA else name
            kept = {k: _number(times.get(k)) for k in ("train_seconds", "inference_ms_per_1000")}
            test[key] = {k: v for k, v in kept.items() if v is not None}
    folds: dict[str, float] = {}
    for key, value in _entry(walk_forward_speed, "seconds").items():
        match = re.fullmatch(r"fold_\d+_(.+)", key)
        if match and _number(value) is not None:
            folds[match[1]] = folds.get(match[1], 0.0) + float(value)
    return {"test": test, "walk_forward": folds}


def validate(params: Params, res: StageResources) -> None:
    report, over = judged(params)
    write_json(paths.VALIDATE, rounded(report))
    mamba = report["mamba"]
    rows = comparison_rows(mamba["oracle_gap"], mamba["margins_over_mamba"])
    write_comparison(
        rows, paths.PLOTS / "mamba_comparison.json", paths.PLOTS / "mamba_comparison.png"
    )
    write_report(
        report,
        SECTIONS,
        cet_baselines(report),
        stage_resources(),
        REPORT,
        paths.PLOTS,
        timings=model_timings(),
    )
    for section in SECTIONS:
        for name, gate in report[section]["goals"].items():
            state = "passed" if gate["passed"] else "FAILED"
            print(f"validate: {state} {gate_line(f'{section}.{name}', gate)}", file=sys.stderr)
    if report["failed"] and params.validate.strict:
        for line in over:
            print(f"validate: {line}", file=sys.stderr)
        raise GateError(
            f"{len(report['failed'])} gate(s) failed: {', '.join(report['failed'])} "
            f"(see {paths.VALIDATE}; validate.strict: false reports without failing)"
        )
