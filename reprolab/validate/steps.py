"""validate: judge every trained model against its goals in ``params.validate``.

The only stage after training that reads ``data/truth`` (the Mamba's filter oracle). It
writes ``metrics/validate.json``: per model, the figures judged and ``{goal, reached, met}``
per goal, and the list of goals that failed.
"""

from __future__ import annotations

import sys
from typing import Any

import pandas as pd

from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.goals import evaluate, failed, goals_of
from reprolab.core.io import read_json, read_parquet, write_json
from reprolab.core.report import rounded
from reprolab.core.resources import StageResources
from reprolab.core.seeding import rng
from reprolab.validate.chart import comparison_rows, write_comparison
from reprolab.validate.oracle import above_oracle, oracle_gap, paired_interval, window_scores

BOOTSTRAP = 2000  # resamples of the paired intervals


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
        predictions = read_parquet(path)
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
    predictions = read_parquet(paths.model_dir("mamba_walk_forward") / "predictions.parquet")
    out: dict[str, Any] = {"folds": {}, "pooled": {}}
    for (fold, model), part in predictions.groupby(["fold", "model"], sort=True):
        keys = part[["symbol", "date"]]
        mine = labels.merge(keys, on=["symbol", "date"], how="inner")
        out["folds"].setdefault(f"fold_{fold}", {})[model] = oracle_gap(part, mine, truth)
    for model, part in predictions.groupby("model", sort=True):  # test blocks are disjoint
        mine = labels.merge(part[["symbol", "date"]], on=["symbol", "date"], how="inner")
        out["pooled"][model] = oracle_gap(part, mine, truth)
    return out


def model_figures(model: str, metrics: dict[str, Any]) -> dict[str, float]:
    """The figures a model's goals are stated on, from its training metrics."""
    if model == "pinn":  # the in-domain part of the test split (the held-out band apart)
        return metrics.get("domain", metrics["test"])
    if model == "cet":
        return metrics["test"]["cet"]
    raise ValueError(model)


def judge(params: Params) -> dict[str, Any]:
    report: dict[str, Any] = {}
    mamba = mamba_judgement(params.seed)
    report["mamba"] = {
        **mamba,
        "goals": evaluate(goals_of(params.validate.mamba), mamba["figures"]),
    }
    report["walk_forward"] = walk_forward_judgement()
    for model in ("pinn", "cet"):
        metrics = read_json(paths.train_metrics(model) / "metrics.json")
        goals = goals_of(getattr(params.validate, model))
        report[model] = {"goals": evaluate(goals, model_figures(model, metrics))}
    report["failed"] = [
        f"{m}.{g}" for m in ("mamba", "pinn", "cet") for g in failed(report[m]["goals"])
    ]
    return report


def validate(params: Params, res: StageResources) -> None:
    report = judge(params)
    write_json(paths.VALIDATE, rounded(report))
    rows = comparison_rows(report["mamba"]["oracle_gap"])
    write_comparison(
        rows, paths.PLOTS / "mamba_comparison.json", paths.PLOTS / "mamba_comparison.png"
    )
    for model in ("mamba", "pinn", "cet"):
        for name, r in report[model]["goals"].items():
            value = "not measured" if r["reached"] is None else f"{r['reached']:.6g}"
            state = "met" if r["met"] else "NOT met"
            print(
                f"validate: {model}.{name} = {value} (goal {r['goal']}): {state}", file=sys.stderr
            )
