"""Serving speed and memory of the PINN pricer, with the closed form measured in the same run.

Part of the benchmark stage; measures, on the exported model of ``train@pinn``:

* single call, price + all Greeks, p50/p95/p99 over ``calls`` distinct contracts after a
  warm-up, in ``rounds`` rounds (each path one block of calls per round; the figures are
  the median round's, every round's p95 listed): the numpy path (``Pricer.price`` on
  scalars, both precisions), the TensorFlow path
  (the ``.keras`` model's ``greeks``, one ``tf.function`` with a fixed input signature) and the
  scalar closed form (``bs_price_greeks`` on one row);
* a cached repeat (the same scalar query again: the LRU cache);
* a batch of ``batch`` contracts: prices only and prices with all Greeks, each precision,
  against the vectorised closed form (``ratio_to_closed_form`` = PINN rate / closed-form rate);
* the peak RSS of a fresh process that serves through the numpy path (single calls and one
  batch), and whether that process imported TensorFlow (it must not);
* the size of the exported artefact.

Timings vary with machine load: compare the figures of one run, not across runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reprolab.core import paths
from reprolab.core.goals import Goal, evaluate

DEFAULT_MODEL = paths.model_dir("pinn") / "weights.npz"
# The goals this benchmark reports on (their bounds: params.yaml validate.benchmark).
PRICER_GOALS = (
    "numpy_single_p95_us",
    "tf_single_p95_us",
    "cached_p95_us",
    "batch_prices_per_s",
    "batch_greeks_per_s",
    "serving_rss_mib",
    "artifact_bytes",
)
# A fresh interpreter that serves through the numpy path and reports its peak memory.
_SERVE = """
import json, sys
import numpy as np
from reprolab.serve.pricer import Pricer
p = Pricer.load(sys.argv[1], sys.argv[2])
for i in range(1000):
    p.price(90.0 + 0.02 * i, 100.0, 0.5, 0.25, 0.03, "put")
g = np.random.default_rng(0)
n = int(sys.argv[3])
p.price(g.uniform(60, 180, n), 100.0, g.uniform(0.01, 2, n), g.uniform(0.05, 0.7, n), 0.03)
tensorflow_imported = "tensorflow" in sys.modules
# this process's own peak (ru_maxrss would carry the parent's peak across exec)
from reprolab.core.resources import own_peak_rss_bytes
print(json.dumps({
    "peak_rss_mib": own_peak_rss_bytes() / 2**20,
    "tensorflow_imported": tensorflow_imported,
}))
"""


def _contracts(n: int, seed: int = 0) -> list[tuple[float, float, float, float, float]]:
    """``n`` distinct in-domain contracts (so no call is answered from the cache)."""
    g = np.random.default_rng(seed)
    return [
        (float(S), 100.0, float(t), float(s), float(r))
        for S, t, s, r in zip(
            g.uniform(70, 140, n),
            g.uniform(0.05, 1.9, n),
            g.uniform(0.06, 0.65, n),
            g.uniform(0.001, 0.099, n),
            strict=True,
        )
    ]


def _latencies_us(
    fns: dict[str, Callable[..., Any]], calls: Sequence[tuple], warmup: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """p50/p95/p99 of every function: the median over ``rounds`` rounds of each round's
    percentiles, with every round's p95 listed.

    ``calls`` is split into ``rounds`` equal slices; in each round every function in turn runs
    its slice as one block (as a server's steady traffic would: the same path again and
    again), the first ``warmup`` calls untimed. Distinct contracts per round, so no call is
    answered from a cache left by an earlier round. Bursts of outside load on a shared VM
    slow every call for a few milliseconds: the median round shows the code, and the rounds
    show the noise.
    """
    per = len(calls) // rounds
    times: dict[str, list[np.ndarray]] = {name: [] for name in fns}
    for k in range(rounds):
        block = calls[k * per : (k + 1) * per]
        for name, fn in fns.items():
            t = np.empty(len(block) - warmup)
            for i, args in enumerate(block):
                start = time.perf_counter()
                fn(*args)
                if i >= warmup:
                    t[i - warmup] = time.perf_counter() - start
            times[name].append(t)
    out: dict[str, dict[str, Any]] = {}
    for name, rounds_t in times.items():
        q = np.array([np.percentile(t, [50, 95, 99]) for t in rounds_t]) * 1e6
        p50, p95, p99 = np.median(q, axis=0)
        out[name] = {
            "p50_us": round(p50, 2),
            "p95_us": round(p95, 2),
            "p99_us": round(p99, 2),
            "p95_us_per_round": [round(v, 2) for v in q[:, 1]],
        }
    return out


def _rate(fn: Callable[[], Any], n: int, repeats: int = 3) -> float:
    """Options per second: ``n`` over the best of ``repeats`` timings (after one warm-up)."""
    fn()
    best = min(_timed(fn) for _ in range(repeats))
    return n / best


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _serving_process(model: Path, precision: str, batch: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(
        [sys.executable, "-c", _SERVE, str(model), precision, str(batch)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(
    model: Path,
    calls: int,
    warmup: int,
    batch: int,
    tensorflow: bool,
    rounds: int = 5,
    *,
    goals: dict[str, Goal],
) -> dict[str, Any]:
    """Every figure of the module docstring, as a JSON-ready dict, judged against ``goals``
    (``validate.benchmark``'s)."""
    from reprolab.datasets.options.blackscholes import bs_price_greeks
    from reprolab.serve.pricer import Pricer

    contracts = _contracts(rounds * (calls + warmup))
    report: dict[str, Any] = {
        "model": str(model),
        "calls": calls,
        "rounds": rounds,
        "batch": batch,
    }
    fast, exact = Pricer.load(model, "float32"), Pricer.load(model, "float64")
    fns: dict[str, Callable[..., Any]] = {
        "numpy_float32": lambda S, K, t, s, r: fast.price(S, K, t, s, r, "put"),
        "numpy_float64": lambda S, K, t, s, r: exact.price(S, K, t, s, r, "put"),
        "closed_form_numpy": lambda S, K, t, s, r: bs_price_greeks(S, K, t, s, r, "put"),
    }
    single = _latencies_us(fns, contracts, warmup, rounds)
    # A repeated query is timed in a row of repeats: that is what the cache is for.
    cached = {"cached": lambda *a: fast.price(100.0, 100.0, 0.5, 0.2, 0.03, "put")}
    single.update(_latencies_us(cached, contracts, warmup, rounds))
    g = np.random.default_rng(1)
    S = g.uniform(70, 140, batch)
    tau, sigma, r = g.uniform(0.05, 1.9, batch), g.uniform(0.06, 0.65, batch), 0.03
    closed = _rate(lambda: bs_price_greeks(S, 100.0, tau, sigma, r, "call"), batch)
    rates: dict[str, Any] = {"closed_form_per_s": round(closed)}
    for precision in ("float32", "float64"):
        pricer = Pricer.load(model, precision)
        for name, greeks in (("prices", False), ("greeks", True)):
            rate = _rate(
                lambda p=pricer, gr=greeks: p.price(S, 100.0, tau, sigma, r, greeks=gr), batch
            )
            rates[f"{name}_{precision}_per_s"] = round(rate)
            rates[f"{name}_{precision}_ratio_to_closed_form"] = round(rate / closed, 4)

    keras_path = model.with_name("model.keras")
    if tensorflow and keras_path.exists():
        # Timed on its own, after every numpy figure: TensorFlow's thread pools keep
        # spinning after a call and would slow whatever ran next.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from reprolab.models.pinn.model import load_pinn_model

        keras_model = load_pinn_model(keras_path)
        tf_fn = {"tensorflow": lambda S, K, t, s, r: keras_model.greeks(S, K, t, s, r, "put")}
        single.update(_latencies_us(tf_fn, contracts, warmup, rounds))

    serving = _serving_process(model, "float32", batch)
    report.update(
        {
            "single_call": single,
            "batch_rates": rates,
            "serving_process": serving,
            "artifact_bytes": model.stat().st_size,
        }
    )
    figures = {
        "numpy_single_p95_us": single["numpy_float32"]["p95_us"],
        "tf_single_p95_us": single.get("tensorflow", {}).get("p95_us"),
        "cached_p95_us": single["cached"]["p95_us"],
        "batch_prices_per_s": rates["prices_float32_per_s"],
        "batch_greeks_per_s": rates["greeks_float32_per_s"],
        "serving_rss_mib": round(serving["peak_rss_mib"], 1),
        "artifact_bytes": report["artifact_bytes"],
    }
    report["goals"] = evaluate({k: goals[k] for k in PRICER_GOALS}, figures)
    return report
