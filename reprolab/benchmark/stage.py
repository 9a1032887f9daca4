"""benchmark: every speed and memory figure of the trained pipeline, each beside its
reference measured in the same run, in ``metrics/benchmark.json`` (``cache: false``).

It reads the trained models and never trains them (no training stage imports this
package). Sections: the PINN pricer (numpy and TensorFlow single calls, cache, batches,
the serving process, QuantLib per option), the Mamba (inference, training step, scans),
the CET (generation, contexts end to end, LoRA vs QLoRA), the data stages (rows per second,
features against the naive reference) and every stage's peak RSS. ``ratios`` collects each
figure's ratio to its reference; ``goals`` judges ``validate.benchmark`` but never fails
the stage: timings on shared machines are noise, the ratios are the result.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.goals import evaluate, goals_of
from reprolab.core.io import read_json, write_json
from reprolab.core.resources import StageResources

DATA_STAGES = ("generate", "split_augment", "features")


def quantlib_section(calls: int, numpy_p50_us: float) -> dict[str, Any]:
    """QuantLib's AnalyticEuropeanEngine per option (price and Greeks, one at a time) on
    contracts like the pricer's, and the PINN's numpy single call over it."""
    from reprolab.validate.quantlib import seconds_per_option

    g = np.random.default_rng(2)
    S = g.uniform(0.7, 1.4, calls)
    tau, sigma, r = g.uniform(0.05, 1.9, calls), g.uniform(0.06, 0.65, calls), 0.03
    us = 1e6 * seconds_per_option(S, tau, np.full(calls, r), sigma)
    return {
        "options": calls,
        "us_per_option": round(us, 3),
        "numpy_single_p50_over_quantlib": round(numpy_p50_us / us, 4),
    }


def pricer_section(params: Params) -> dict[str, Any]:
    from reprolab.benchmark import pricer

    b = params.benchmark
    model = paths.model_dir("pinn") / "weights.npz"
    goals = goals_of(params.validate.benchmark)
    report = pricer.run(model, b.calls, b.warmup, b.batch, True, b.rounds, goals=goals)
    numpy_p50 = report["single_call"]["numpy_float32"]["p50_us"]
    report["quantlib"] = quantlib_section(b.quantlib_options, numpy_p50)
    return report


def mamba_section(params: Params) -> dict[str, Any]:
    from reprolab.benchmark import mamba, scan
    from reprolab.models.mamba.fitting import configure_tensorflow
    from reprolab.models.mamba.model import SCANS

    b, t = params.benchmark, params.train.mamba
    configure_tensorflow()
    registry = read_json(paths.features("markets") / "registry.json")
    window, n_features = int(registry["window"]), len(registry["features"])
    return {
        "inference": mamba.inference(t, b.mamba_windows, params.resources.memory_budget_mb),
        "train_step": mamba.train_step(t, b.train_steps, window, n_features),
        "scan": scan.run(1, b.scan_repeats, b.scan_lengths, list(SCANS)),
    }


def cet_section(params: Params) -> dict[str, Any]:
    from reprolab.benchmark import cet

    return cet.run(params, params.benchmark.cet_programs, params.benchmark.cet_adapter_steps)


def data_section(params: Params) -> dict[str, Any]:
    """Rows per second of every data stage (from its resource file) and the market features
    against the naive prefix-by-prefix reference on a synthetic batch."""
    from reprolab.benchmark import features
    from reprolab.core.registry import DATASETS

    stages = {}
    for step in DATA_STAGES:
        for dataset in DATASETS:
            path = paths.RESOURCES / f"{step}_{dataset}.json"
            if path.exists():
                r = read_json(path)
                stages[f"{step}@{dataset}"] = {k: r.get(k) for k in ("rows", "rows_per_s")}
    goal = goals_of(params.validate.benchmark)["features_rows_per_s"]
    return {
        "stages": stages,
        "features_vs_naive": features.run(params.benchmark.feature_rows, goal=goal),
    }


def resources_section() -> dict[str, Any]:
    """Every pipeline stage's wall time and peak RSS (metrics/resources), in order."""
    from reprolab.core.stage import stage_resources

    return {
        r["stage"]: {k: r.get(k) for k in ("wall_s", "peak_rss_mib")} for r in stage_resources()
    }


def ratios(report: dict[str, Any]) -> dict[str, float | None]:
    """Each figure over its same-run reference (> 1: slower, or larger, than the reference,
    except the rates, which say so in their name)."""
    p, m, c, d = report["pricer"], report["mamba"], report["cet"], report["data"]
    single = p["single_call"]

    def over(a: str, b: str) -> float | None:
        if a not in single or b not in single:
            return None
        return round(single[a]["p50_us"] / single[b]["p50_us"], 4)

    comparator = next(k for k in m["train_step"] if k.startswith("mamba_over_"))
    fastest = m["scan"]["fastest"]
    return {
        "pricer_numpy_over_closed_form_single_p50": over("numpy_float32", "closed_form_numpy"),
        "pricer_tensorflow_over_numpy_single_p50": over("tensorflow", "numpy_float32"),
        "pricer_cached_over_numpy_single_p50": over("cached", "numpy_float32"),
        "pricer_numpy_over_quantlib_per_option": p["quantlib"]["numpy_single_p50_over_quantlib"],
        "pricer_batch_prices_rate_over_closed_form": p["batch_rates"][
            "prices_float32_ratio_to_closed_form"
        ],
        "pricer_batch_greeks_rate_over_closed_form": p["batch_rates"][
            "greeks_float32_ratio_to_closed_form"
        ],
        f"mamba_inference_rate_{comparator}": m["inference"][comparator],
        f"mamba_train_step_{comparator}": m["train_step"][comparator],
        **{
            f"scan_{scan}_over_fastest_{shape}": round(
                m["scan"][scan][shape] / m["scan"][fastest[shape]][shape], 4
            )
            for scan in sorted(m["scan"]["max_rel_error"])
            for shape in sorted(fastest)
        },
        "cet_generation_rate_over_base": c["generation"]["cet_over_base"],
        "cet_contexts_rate_over_heuristic": c["end_to_end"]["cet_over_heuristic"],
        "cet_qlora_over_lora_step": c["adapters"]["qlora_over_lora"],
        "features_rate_over_naive": round(d["features_vs_naive"]["speedup"], 1),
    }


def benchmark(params: Params, res: StageResources) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "pricer": lambda: pricer_section(params),
        "mamba": lambda: mamba_section(params),
        "cet": lambda: cet_section(params),
        "data": lambda: data_section(params),
        "resources": resources_section,
    }
    report: dict[str, Any] = {}
    for name in res.progress(list(sections), total=len(sections), desc="benchmark"):
        report[name] = sections[name]()
    report["ratios"] = ratios(report)
    figures = {
        "mamba_over_comparator_step_ratio": report["ratios"][
            next(k for k in report["ratios"] if k.startswith("mamba_train_step_"))
        ],
        "features_rows_per_s": report["data"]["features_vs_naive"]["goals"]["features_rows_per_s"][
            "value"
        ],
    }
    goals = {**report["pricer"]["goals"]}
    chosen = goals_of(params.validate.benchmark)
    goals.update(evaluate({k: chosen[k] for k in figures}, figures))
    report["goals"] = goals
    write_json(paths.BENCHMARK, report)
    missed = [k for k, g in goals.items() if not g["passed"]]
    print(
        f"benchmark: {len(goals) - len(missed)}/{len(goals)} speed goals met"
        + (f" (missed, reported only: {', '.join(missed)})" if missed else ""),
        file=sys.stderr,
    )
