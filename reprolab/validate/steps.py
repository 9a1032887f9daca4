"""validate: judge the data, every trained model and the resources against the gates in
``params.validate``.

The only stage after training that reads ``data/truth`` (the Mamba's filter oracle). It
writes ``metrics/validate.json``: per section (data, resources, mamba, pinn, cet) the
figures judged and ``{value, threshold, passed, meaning}`` per gate, and the list of gates
that failed. Under ``validate.strict`` a failed gate fails the stage, one line per gate.
"""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd

from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.errors import GateError
from reprolab.core.goals import evaluate, failed, gate_line, goals_of
from reprolab.core.io import read_json, read_parquet, write_json
from reprolab.core.report import rounded
from reprolab.core.resources import StageResources
from reprolab.core.seeding import rng
from reprolab.core.stage import DATASETS, MODELS
from reprolab.validate.cet import cet_judgement
from reprolab.validate.chart import comparison_rows, write_comparison
from reprolab.validate.data import data_judgement
from reprolab.validate.oracle import (
    above_oracle,
    oracle_gap,
    paired_interval,
    reliability,
    window_scores,
)
from reprolab.validate.pinn import pinn_judgement
from reprolab.validate.report import write_report

BOOTSTRAP = 2000  # resamples of the paired intervals
REPORT = paths.METRICS / "report.md"  # the review a pull request reads
SECTIONS = ("data", "resources", "mamba", "pinn", "cet")  # the gated sections, in order
# The stages before validate (dvc.yaml), each writing metrics/resources/<name>.json.
JUDGED_STAGES = (
    *(
        f"{s}_{d}"
        for s in ("generate", "split_augment", "features", "data_metrics")
        for d in DATASETS
    ),
    *(f"train_{m}" for m in MODELS),
    "walk_forward",
)


def mamba_judgement(seed: int) -> dict[str, Any]:
    """The Mamba (``model``) and every comparator against the filter oracle on the same test
    windows: the gaps, the leakage alarm per model, and the paired margin of the Mamba over
    the best comparator (by expected accuracy)."""
    labels = read_parquet(paths.features("markets") / "windows" / "test.parquet")
    labels = labels.loc[labels["copy"] == 0, ["symbol", "date", "label"]]
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
        leakage[name] = above_oracle(scores[name], BOOTSTRAP, rng(seed, "validate", name))
    others = [n for n in gaps if n != "model"]
    best = max(others, key=lambda n: gaps[n]["expected_accuracy"]) if others else None
    margin = None
    if best is not None:
        diff = scores["model"]["expected"] - scores[best]["expected"]
        margin = {"best": best, **paired_interval(diff, BOOTSTRAP, rng(seed, "validate", "margin"))}
    figures = {
        "expected_accuracy_minus_oracle": gaps["model"]["expected_accuracy_minus_oracle"],
        "margin_over_best_comparator": None if margin is None else margin["difference"],
        "models_above_oracle": sum(v["alarm"] for v in leakage.values()),
    }
    return {
        "oracle_gap": gaps,
        "above_oracle": leakage,
        "margin_over_best_comparator": margin,
        "reliability": calibration,
        "figures": figures,
    }


def walk_forward_judgement() -> dict[str, Any]:
    """The walk-forward predictions against the oracle: per fold and pooled, per model."""
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
    return out


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


def stage_resources() -> list[dict[str, Any]]:
    """The resource file of every judged stage that wrote one, in pipeline order."""
    files = [paths.RESOURCES / f"{stage}.json" for stage in JUDGED_STAGES]
    return [read_json(f) for f in files if f.exists()]


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
    report["mamba"] = {
        **mamba,
        "goals": evaluate(goals_of(params.validate.mamba), mamba["figures"]),
    }
    report["walk_forward"] = walk_forward_judgement()
    v = params.validate
    pinn = pinn_judgement(params.seed, v.pinn_fresh_contracts, v.pinn_quantlib_contracts)
    report["pinn"] = {**pinn, "goals": evaluate(goals_of(params.validate.pinn), pinn["figures"])}
    cet = cet_judgement(params)
    report["cet"] = {**cet, "goals": evaluate(goals_of(params.validate.cet), cet["figures"])}
    report["failed"] = [f"{m}.{g}" for m in SECTIONS for g in failed(report[m]["goals"])]
    return report, over


def validate(params: Params, res: StageResources) -> None:
    report, over = judged(params)
    write_json(paths.VALIDATE, rounded(report))
    rows = comparison_rows(report["mamba"]["oracle_gap"])
    write_comparison(
        rows, paths.PLOTS / "mamba_comparison.json", paths.PLOTS / "mamba_comparison.png"
    )
    write_report(report, SECTIONS, cet_baselines(report), stage_resources(), REPORT, paths.PLOTS)
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
