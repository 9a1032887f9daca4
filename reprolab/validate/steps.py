"""validate: judge every trained model against its goals in ``params.validate``.

The only stage after training that reads ``data/truth`` (the Mamba's filter oracle). It
writes ``metrics/validate.json``: per model, the figures judged and ``{goal, reached, met}``
per goal, and the list of goals that failed.
"""

from __future__ import annotations

import sys
from typing import Any

from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.goals import evaluate, failed, goals_of
from reprolab.core.io import read_json, read_parquet, write_json
from reprolab.core.report import rounded
from reprolab.core.resources import StageResources
from reprolab.validate.oracle import oracle_gap


def mamba_oracle_gaps() -> dict[str, dict[str, Any]]:
    """The oracle gap of the Mamba (``model``) and of every comparator, same test windows."""
    labels = read_parquet(paths.features("markets") / "windows" / "test.parquet")
    labels = labels.loc[labels["copy"] == 0, ["symbol", "date", "label"]]
    truth = read_parquet(paths.truth("markets"), columns=["symbol", "date", "oracle_p_up"])
    model_dir = paths.model_dir("mamba")
    gaps = {"model": oracle_gap(read_parquet(model_dir / "predictions.parquet"), labels, truth)}
    for path in sorted((model_dir / "comparators").glob("*_predictions.parquet")):
        name = path.name.removesuffix("_predictions.parquet")
        gaps[name] = oracle_gap(read_parquet(path), labels, truth)
    return gaps


def model_figures(model: str, metrics: dict[str, Any]) -> dict[str, float]:
    """The figures a model's goals are stated on, from its training metrics."""
    if model == "pinn":  # the in-domain part of the test split (the held-out band apart)
        return metrics.get("domain", metrics["test"])
    if model == "cet":
        return metrics["test"]["cet"]
    raise ValueError(model)


def judge(params: Params) -> dict[str, Any]:
    report: dict[str, Any] = {}
    gaps = mamba_oracle_gaps()
    report["mamba"] = {
        "oracle_gap": gaps,
        "goals": evaluate(goals_of(params.validate.mamba), gaps["model"]),
    }
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
    for model in ("mamba", "pinn", "cet"):
        for name, r in report[model]["goals"].items():
            value = "not measured" if r["reached"] is None else f"{r['reached']:.6g}"
            state = "met" if r["met"] else "NOT met"
            print(
                f"validate: {model}.{name} = {value} (goal {r['goal']}): {state}", file=sys.stderr
            )
