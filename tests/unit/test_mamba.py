"""Mamba block: every scan against the float64 numpy reference, causality, initialisers,
serialisation and a warning-free fit. Small shapes throughout; speed lives in
reprolab.benchmark.scan, never in assertions here."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from reprolab.core.config import MambaTrainParams
from reprolab.models.mamba.model import (
    AUTO_SCAN,
    SCANS,
    DtBiasInitializer,
    MambaBlock,
    RMSNorm,
    build_mamba_classifier,
    get_scan,
    reference_scan,
    resolve_scan,
)
from tests.tiny import repo_params

IMPLS = list(SCANS)


def _arch(
    d_model: int, d_state: int, d_conv: int, expand: int, n_layers: int, **more: object
) -> MambaTrainParams:
    """The pipeline's Mamba params, resized (architecture fields only)."""
    return dataclasses.replace(
        repo_params().train.mamba, d_model=d_model, d_state=d_state, d_conv=d_conv, expand=expand,
        n_layers=n_layers, **more,
    )  # fmt: skip


CHUNK = 8  # not a divisor of the lengths below, so the padded last chunk is exercised


def _inputs(
    batch: int, length: int, d_inner: int, d_state: int, dt_max: float, seed: int
) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(batch, length, d_inner))
    dt = rng.uniform(1e-3, dt_max, size=(batch, length, d_inner))
    a = -np.exp(rng.uniform(-1.0, 1.5, size=(d_inner, d_state)))
    b = rng.normal(size=(batch, length, d_state))
    c = rng.normal(size=(batch, length, d_state))
    d = rng.normal(size=d_inner)
    return u, dt, a, b, c, d


def _run(scan: str, *case: np.ndarray, chunk_size: int = CHUNK) -> np.ndarray:
    u, dt, a, b, c, d = case
    args = [tf.constant(v) for v in (u, dt, a, b, c)]
    y = get_scan(scan, chunk_size)(*args)
    assert y.dtype == args[0].dtype
    return y.numpy() + d * u


def _assert_close(y: np.ndarray, ref: np.ndarray) -> None:
    # 1e-5 relative; the absolute floor only covers entries that are ~0 in the reference.
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-10 * np.max(np.abs(ref)))


# --------------------------------------------------------------------------- scans
@pytest.mark.parametrize("scan", IMPLS)
def test_scan_matches_reference_float64(scan: str) -> None:
    case = _inputs(batch=2, length=37, d_inner=6, d_state=4, dt_max=0.5, seed=1)
    _assert_close(_run(scan, *case), reference_scan(*case))


@pytest.mark.parametrize("chunk_size", [1, 5, 37, 64])
def test_chunked_any_chunk_size(chunk_size: int) -> None:
    case = _inputs(batch=2, length=37, d_inner=3, d_state=2, dt_max=0.5, seed=2)
    _assert_close(_run("chunked", *case, chunk_size=chunk_size), reference_scan(*case))


@pytest.mark.parametrize("scan", IMPLS)
def test_scan_long_sequence_large_dt(scan: str) -> None:
    """L=512, dt up to 5, |A| up to e^1.5: exp(cumsum) forms overflow here; exact ones don't."""
    case = _inputs(batch=1, length=512, d_inner=4, d_state=3, dt_max=5.0, seed=3)
    y = _run(scan, *case)
    assert np.all(np.isfinite(y))
    _assert_close(y, reference_scan(*case))
    # and in float32, as in production, outputs and gradients stay finite
    args = [tf.constant(v, dtype=tf.float32) for v in case[:5]]
    with tf.GradientTape() as tape:
        tape.watch(args)
        loss = tf.reduce_sum(get_scan(scan, CHUNK)(*args))
    assert np.isfinite(loss.numpy())
    assert all(np.all(np.isfinite(g.numpy())) for g in tape.gradient(loss, args))


def test_scan_gradients_agree() -> None:
    case = _inputs(batch=2, length=19, d_inner=3, d_state=2, dt_max=1.0, seed=4)
    grads = {}
    for scan in IMPLS:
        args = [tf.constant(v) for v in case[:5]]
        with tf.GradientTape() as tape:
            tape.watch(args)
            loss = tf.reduce_sum(tf.sin(get_scan(scan, CHUNK)(*args)))
        grads[scan] = [g.numpy() for g in tape.gradient(loss, args)]
    for scan in IMPLS[1:]:
        for g, g_ref in zip(grads[scan], grads[IMPLS[0]], strict=True):
            np.testing.assert_allclose(g, g_ref, rtol=1e-7, atol=1e-10 * np.max(np.abs(g_ref)))


def test_auto_and_unknown_scan() -> None:
    assert set(AUTO_SCAN) == {"CPU", "GPU"}
    assert set(AUTO_SCAN.values()) <= set(SCANS)
    kind = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    assert resolve_scan("auto") == AUTO_SCAN[kind]
    with pytest.raises(ValueError, match="scan"):
        MambaBlock(8, scan="fft")


# --------------------------------------------------------------------------- block
def _block(scan: str = "loop", **kw: object) -> MambaBlock:
    kw = {"d_state": 4, "d_conv": 3, "expand": 2, "seed": 5, "dtype": "float64", **kw}
    return MambaBlock(8, scan=scan, chunk_size=4, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("scan", IMPLS)
def test_block_is_causal(scan: str) -> None:
    rng = np.random.default_rng(6)
    block = _block(scan)
    x = rng.normal(size=(2, 13, 8))
    y = block(x).numpy()
    assert y.dtype == np.float64
    for t in (0, 5, 11):
        x2 = x.copy()
        x2[:, t + 1 :] = rng.normal(size=x2[:, t + 1 :].shape) * 3.0
        y2 = block(x2).numpy()
        np.testing.assert_allclose(y2[:, : t + 1], y[:, : t + 1], rtol=0, atol=1e-13)
        assert not np.allclose(y2[:, t + 1 :], y[:, t + 1 :])  # later steps do change


def test_block_float32_and_float64() -> None:
    x = np.random.default_rng(7).normal(size=(2, 9, 8))
    block64 = _block()
    y64 = block64(x).numpy()
    block32 = _block(dtype="float32")
    block32.build(x.shape)
    # Keras draws seeded initialisers per dtype, so copy the float64 weights over.
    block32.set_weights([w.astype(np.float32) for w in block64.get_weights()])
    y32 = block32(x.astype(np.float32)).numpy()
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    assert all(v.dtype == "float32" for v in block32.weights)
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("norm", ["none", "rms"])
def test_classifier_per_step_outputs_are_causal(norm: str) -> None:
    model = build_mamba_classifier(
        3, 12, _arch(8, 4, 3, 2, 2, scan="auto", norm=norm), seed=1, dtype="float64"
    )
    per_step = keras.Model(model.input, model.get_layer("last_step").input)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 12, 3))
    y = per_step(x).numpy()
    t = 6
    x2 = x.copy()
    x2[:, t + 1 :] = rng.normal(size=x2[:, t + 1 :].shape)
    np.testing.assert_allclose(per_step(x2).numpy()[:, : t + 1], y[:, : t + 1], rtol=0, atol=1e-13)
    # the head reads the last step only
    np.testing.assert_allclose(
        model(x).numpy(), model.get_layer("head")(y[:, -1]).numpy(), rtol=1e-12
    )


def test_norm_choice_decides_whether_step_magnitude_survives() -> None:
    """RMSNorm hands the head a vector of unit size whatever the input's scale; without it, a
    calmer or wilder window (the regime signal) reaches the head as a smaller or larger one."""
    x = np.random.default_rng(9).normal(size=(4, 12, 3))
    sizes = {}
    for norm in ("none", "rms"):
        model = build_mamba_classifier(3, 12, _arch(8, 4, 3, 2, 1, norm=norm), seed=1)
        last = keras.Model(model.input, model.get_layer("head").input)
        sizes[norm] = [
            np.sqrt(np.mean(np.square(last(scale * x).numpy()), axis=-1)) for scale in (1.0, 3.0)
        ]
    np.testing.assert_allclose(sizes["rms"][0], 1.0, rtol=1e-3)
    np.testing.assert_allclose(sizes["rms"][1], 1.0, rtol=1e-3)
    assert np.all(sizes["none"][1] > 1.5 * sizes["none"][0])


def test_conv_is_causal_with_left_padding() -> None:
    block = _block(d_conv=4)
    block.build((None, 10, 8))
    x = np.zeros((1, 10, block.d_inner))
    t0 = 3
    x[0, t0] = 1.0  # impulse
    out = block.causal_conv(tf.constant(x)).numpy()[0] - block.conv_bias.numpy()
    kernel = block.conv_kernel.numpy()  # (d_conv, d_inner); kernel[-1] multiplies x_t
    for t in range(10):
        lag = t - t0
        expected = kernel[block.d_conv - 1 - lag] if 0 <= lag < block.d_conv else 0.0
        np.testing.assert_allclose(out[t], expected, rtol=0, atol=1e-15)
    assert out.shape[0] == 10  # same length: padding on the left only


def test_initialisers() -> None:
    block = _block(d_state=5)
    block.build((None, 4, 8))
    a_log = block.A_log.numpy()
    np.testing.assert_allclose(a_log, np.tile(np.log(np.arange(1.0, 6.0)), (block.d_inner, 1)))
    np.testing.assert_array_equal(block.D.numpy(), 1.0)
    dt = tf.nn.softplus(block.dt_bias).numpy()
    assert np.all(dt >= 1e-3 * (1 - 1e-9)) and np.all(dt <= 1e-1 * (1 + 1e-9))
    # a log-uniform draw from a seed: many values, reproducible, spread over the range
    big = tf.nn.softplus(DtBiasInitializer(seed=3)((4096,), "float64")).numpy()
    assert big.min() < 2e-3 and big.max() > 5e-2 and 0.4 < np.mean(np.log10(big) < -2) < 0.6
    again = DtBiasInitializer(seed=3)((4096,), "float64").numpy()
    np.testing.assert_array_equal(tf.nn.softplus(again).numpy(), big)
    assert block.dt_rank == 1  # ceil(8 / 16)


def test_build_accepts_lists() -> None:
    for shape in ([None, 6, 8], [[None, 6, 8]]):
        block = _block()
        block.build(shape)
        assert block.built and block.in_proj.shape == (8, 2 * block.d_inner)


def test_config_round_trip() -> None:
    block = _block("chunked", d_state=3)
    x = np.random.default_rng(9).normal(size=(1, 7, 8))
    y = block(x).numpy()
    clone = MambaBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    np.testing.assert_array_equal(clone(x).numpy(), y)  # same seed -> same initial weights
    norm = RMSNorm(epsilon=1e-5, dtype="float64")
    assert RMSNorm.from_config(norm.get_config()).get_config() == norm.get_config()


def test_seeded_weights_reproducible() -> None:
    def weights(seed: int) -> list[np.ndarray]:
        return build_mamba_classifier(3, 8, _arch(8, 4, 3, 2, 1), seed=seed).get_weights()

    w0, w0b, w1 = weights(0), weights(0), weights(1)
    assert all(np.array_equal(a, b) for a, b in zip(w0, w0b, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(w0, w1, strict=True))


# --------------------------------------------------------------------------- model
def test_save_load_identical_predictions(tmp_path: Path) -> None:
    model = build_mamba_classifier(
        4, 10, _arch(8, 4, 3, 2, 2, scan="chunked", chunk_size=4), seed=2
    )
    x = np.random.default_rng(10).normal(size=(5, 10, 4)).astype(np.float32)
    path = tmp_path / "mamba.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode on: no Lambda layers
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.get_layer("mamba_1").get_config() == model.get_layer("mamba_1").get_config()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_fit_emits_no_build_warnings() -> None:
    handler = _Records()
    loggers = [logging.getLogger(n) for n in ("", "absl", "tensorflow", "keras", "py.warnings")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = build_mamba_classifier(4, 10, _arch(8, 4, 3, 2, 2), seed=3)
            model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
            rng = np.random.default_rng(11)
            x = rng.normal(size=(48, 10, 4)).astype(np.float32)
            y = (rng.random(48) > 0.5).astype(np.float32)
            history = model.fit(x, y, epochs=1, batch_size=16, validation_split=0.25, verbose=0)
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    assert np.isfinite(history.history["loss"][0])
    texts = [str(w.message) for w in caught] + handler.messages
    bad = [t for t in texts if any(k in t.lower() for k in ("build", "built", "unbuilt"))]
    assert not bad, bad


# The reference itself, on a case with a closed form: N=1, constant dt, u, B, C.
def test_reference_scan_closed_form() -> None:
    length, dt, a = 50, 0.3, -2.0
    u = np.ones((1, length, 1))
    ref = reference_scan(u, np.full_like(u, dt), np.array([[a]]), u[..., :1], u[..., :1], [0.0])
    decay = np.exp(dt * a)
    expected = dt * (1 - decay ** np.arange(1, length + 1)) / (1 - decay)
    np.testing.assert_allclose(ref[0, :, 0], expected, rtol=1e-12)
