"""Benchmark: the Mamba selective-scan implementations, forward + backward, on this device.

Part of the benchmark stage (``benchmark.scan_lengths``, ``benchmark.scan_repeats``).

For every implementation in :data:`reprolab.models.mamba.model.SCANS`, a seeded ``MambaBlock``
(d_model 16 -> d_inner 32, d_state 8, d_conv 4) runs forward and backward under
``tf.GradientTape`` (loss = sum of the outputs; gradients w.r.t. the input and every weight)
inside one ``tf.function`` per implementation, without ``jit_compile`` (XLA slowed the
sequential loop on CPU and cannot compile the associative scan). Warm-up calls first, then
the median of ``repeats`` wall-clock runs, in float32, at batch 128 and each length
(L = 60 is the training shape). Each implementation's max normwise relative error against
the float64 numpy reference (``reference_scan``) is measured on small float32 cases, one of them at
L = 256 with dt up to 5. The JSON holds ``{implementation: {shape: ms}}`` plus ``auto``
(what ``scan="auto"`` picks here), ``fastest`` per shape, ``max_rel_error`` and ``meta``.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

BATCH = 128
D_MODEL, D_STATE, D_CONV, EXPAND = 16, 8, 4, 2
LENGTHS = (60, 256)
CHUNK_SIZE = 16  # the params.yaml default (train.mamba.chunk_size)


def _shape_key(batch: int, length: int) -> str:
    return f"b{batch}_l{length}"


def time_block(
    scan: str, batch: int, length: int, warmup: int, repeats: int, chunk_size: int = CHUNK_SIZE
) -> float:
    """Median ms of one forward + backward pass of a float32 MambaBlock with ``scan``."""
    import numpy as np
    import tensorflow as tf

    from reprolab.models.mamba.model import MambaBlock

    block = MambaBlock(
        D_MODEL, d_state=D_STATE, d_conv=D_CONV, expand=EXPAND, scan=scan,
        chunk_size=chunk_size, seed=0, dtype="float32",
    )  # fmt: skip
    x = tf.constant(
        np.random.default_rng(1).normal(size=(batch, length, D_MODEL)), dtype=tf.float32
    )
    block.build(x.shape)
    weights = block.trainable_variables

    @tf.function  # no jit_compile: see the module docstring
    def step(x: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(block(x))
        return tape.gradient(loss, [x, *weights])

    for _ in range(warmup):
        step(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        grads = step(x)
        _ = [g.numpy() for g in grads]  # wait for every result
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def scan_errors(scan: str, chunk_size: int = CHUNK_SIZE) -> dict[str, float]:
    """Max normwise relative error (max|y - ref| / max|ref|) of a float32 run vs float64."""
    import numpy as np
    import tensorflow as tf

    from reprolab.models.mamba.model import get_scan, reference_scan

    fn = get_scan(scan, chunk_size)
    out: dict[str, float] = {}
    for name, (batch, length, dt_max) in {
        "b4_l64_dt0.1": (4, 64, 0.1),
        "b2_l256_dt5": (2, 256, 5.0),
    }.items():
        rng = np.random.default_rng(7)
        d_inner = D_MODEL * EXPAND
        u = rng.normal(size=(batch, length, d_inner))
        dt = rng.uniform(1e-3, dt_max, size=(batch, length, d_inner))
        a = -np.exp(rng.uniform(-1.0, 1.0, size=(d_inner, D_STATE)))
        b = rng.normal(size=(batch, length, D_STATE))
        c = rng.normal(size=(batch, length, D_STATE))
        d = rng.normal(size=d_inner)
        ref = reference_scan(u, dt, a, b, c, d)
        args = [tf.constant(v, dtype=tf.float32) for v in (u, dt, a, b, c)]
        y = fn(*args).numpy().astype(np.float64) + d * u.astype(np.float32)
        err = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
        out[name] = err if np.isfinite(err) else float("inf")
    return out


def run(warmup: int, repeats: int, lengths: Sequence[int], scans: Sequence[str]) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from reprolab.models.mamba.model import AUTO_SCAN, resolve_scan

    result: dict[str, Any] = {}
    errors: dict[str, dict[str, float]] = {}
    for scan in scans:
        result[scan] = {}
        for length in lengths:
            ms = time_block(scan, BATCH, length, warmup, repeats)
            result[scan][_shape_key(BATCH, length)] = round(ms, 3)
            print(f"  {scan:<13} L={length:<4} {ms:9.1f} ms", file=sys.stderr, flush=True)
        errors[scan] = scan_errors(scan)
    fastest = {
        _shape_key(BATCH, n): min(scans, key=lambda s, n=n: result[s][_shape_key(BATCH, n)])
        for n in lengths
    }
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    result["auto"] = resolve_scan("auto")
    result["fastest"] = fastest
    result["max_rel_error"] = errors
    result["meta"] = {
        "what": "ms per batch, forward + backward (grads w.r.t. input and all weights), "
        "float32, tf.function without jit_compile, median of repeats",
        "device": device,
        "auto_table": dict(AUTO_SCAN),
        "batch": BATCH,
        "d_model": D_MODEL,
        "d_inner": D_MODEL * EXPAND,
        "d_state": D_STATE,
        "d_conv": D_CONV,
        "chunk_size": CHUNK_SIZE,
        "warmup": warmup,
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    return result
