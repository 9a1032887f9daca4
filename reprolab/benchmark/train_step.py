"""Train-step time of the Mamba vs its GRU/LSTM comparator at equal parameter count.

``python -m reprolab.benchmark.train_step [--out metrics/bench/train_step.json]``: both models
are built from the default ``train.mamba`` params, compiled identically, warmed up, then
timed with ``train_on_batch`` in alternation (ABAB...) so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

import numpy as np

from reprolab.core import paths
from reprolab.core.config import load_params
from reprolab.core.goals import evaluate, goals_of
from reprolab.core.io import write_json

DEFAULT_OUT = str(paths.bench("train_step"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprolab.benchmark.train_step")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--features", type=int, default=17)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from reprolab.models.mamba.baselines import build_recurrent_classifier, units_matching
    from reprolab.models.mamba.keras_metrics import direction_compile_kwargs
    from reprolab.models.mamba.model import build_mamba_classifier, resolve_scan

    params = load_params()
    t, goals = params.train.mamba, goals_of(params.validate.benchmark)
    keras.utils.set_random_seed(0)
    mamba = build_mamba_classifier(args.features, args.window, t, seed=0)
    units = units_matching(t.comparator, args.features, mamba.count_params())
    other = build_recurrent_classifier(t.comparator, args.features, args.window, units, seed=0)
    models = {"mamba": mamba, t.comparator: other}
    for model in models.values():
        model.compile(**direction_compile_kwargs(t.learning_rate))
    gen = np.random.default_rng(0)
    x = gen.standard_normal((t.batch_size, args.window, args.features)).astype(np.float32)
    y = gen.integers(0, 2, t.batch_size).astype(np.float32)
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(args.steps + 3):
        for name, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)
            if step >= 3:  # the first steps trace and compile
                times[name].append(time.perf_counter() - start)
    ms = {name: 1000 * float(np.median(v)) for name, v in times.items()}
    report = {
        "batch_size": t.batch_size,
        "window": args.window,
        "features": args.features,
        "scan": resolve_scan(t.scan),
        "params": {name: int(m.count_params()) for name, m in models.items()},
        "step_ms_median": {k: round(v, 3) for k, v in ms.items()},
        f"mamba_over_{t.comparator}": round(ms["mamba"] / ms[t.comparator], 3),
    }
    ratio = {"mamba_over_comparator_step_ratio": report[f"mamba_over_{t.comparator}"]}
    report["goals"] = evaluate({k: goals[k] for k in ratio}, ratio)
    write_json(args.out, report)
    print(
        f"train step (batch {t.batch_size}, L={args.window}): mamba {ms['mamba']:.1f} ms, "
        f"{t.comparator} {ms[t.comparator]:.1f} ms, ratio "
        f"{report[f'mamba_over_{t.comparator}']:.2f} "
        f"(goal {goals['mamba_over_comparator_step_ratio']}) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
