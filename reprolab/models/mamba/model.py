"""Mamba-1 selective state-space block as a Keras 3 layer (TensorFlow backend).

Numerics follow the reference implementation (``mamba_ssm.modules.mamba_simple.Mamba`` with
``selective_scan_ref``): input projection to (x, z), causal depthwise conv + SiLU, ``x_proj``
to (dt, B, C), ``dt = softplus(dt_proj(dt) + dt_bias)``, ``A = -exp(A_log)`` (S4D-real),
zero-order-hold discretisation ``dA = exp(dt*A)``, ``dBu = dt*B*u``, recurrence
``h_t = dA_t*h_{t-1} + dBu_t``, readout ``y_t = <h_t, C_t> + D*u_t``, gate ``y*SiLU(z)`` and an
output projection.

Scan shape conventions (every implementation in :data:`SCANS`)::

    u:  (batch, L, D)   input of the SSM (after conv + SiLU), D = d_inner
    dt: (batch, L, D)   positive step sizes (after softplus)
    A:  (D, N)          negative real diagonal state matrix, N = d_state
    B:  (batch, L, N)   input matrix per step
    C:  (batch, L, N)   output matrix per step
    ->  y: (batch, L, D) = <h_t, C_t>  (the ``D*u`` skip term is added by the caller)

All of them compute in the dtype of ``u`` (float32 in production, float64 in tests).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from reprolab.core.config import MambaTrainParams
from reprolab.core.seeding import int_seed

ScanFn = Callable[..., tf.Tensor]

# Fastest exact scan per device kind, from reprolab.benchmark.scan (metrics/bench/mamba_scan.json).
# CPU: measured on a 2-core CPU, MambaBlock forward+backward, batch 128, d_inner 32, N 8:
# loop 37 ms (L=60) / 177 ms (L=256), materialized 42 / 348, associative 365 / 2074,
# chunked(16) 802 / 2581; loop was fastest at both lengths in every run.
# GPU: UNMEASURED (no GPU was available). Best guess: the chunked form replaces L sequential
# steps by L/chunk_size steps of large batched matmul-like work, which is what GPUs reward.
AUTO_SCAN: dict[str, str] = {"CPU": "loop", "GPU": "chunked"}

DT_MIN = 1e-3
DT_MAX = 1e-1
DT_INIT_FLOOR = 1e-4


# --------------------------------------------------------------------------- scans
def loop_scan(u: tf.Tensor, dt: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor) -> tf.Tensor:
    """``tf.scan`` over time; discretises and reads out inside the step.

    Nothing of size (batch, L, D, N) is built in the forward pass beyond the per-step state,
    which is what made it the fastest exact form on CPU.
    """
    dtype = u.dtype
    A = tf.cast(A, dtype)
    # time-major elements: (L, batch, ...)
    elems = (
        tf.transpose(dt, [1, 0, 2]),
        tf.transpose(dt * u, [1, 0, 2]),
        tf.transpose(B, [1, 0, 2]),
        tf.transpose(C, [1, 0, 2]),
    )
    batch = tf.shape(u)[0]
    h0 = tf.zeros(tf.stack([batch, tf.shape(A)[0], tf.shape(A)[1]]), dtype=dtype)
    y0 = tf.zeros(tf.stack([batch, tf.shape(A)[0]]), dtype=dtype)

    def step(carry: tuple[tf.Tensor, tf.Tensor], x: tuple[tf.Tensor, ...]) -> tuple:
        h, _ = carry
        dt_t, dtu_t, b_t, c_t = x
        h = tf.exp(dt_t[:, :, None] * A) * h + dtu_t[:, :, None] * b_t[:, None, :]
        y = tf.linalg.matvec(h, c_t)  # (batch, D, N) @ (batch, N) -> (batch, D)
        return h, y

    _, ys = tf.scan(step, elems, initializer=(h0, y0))
    return tf.transpose(ys, [1, 0, 2])


def _discretise(
    u: tf.Tensor, dt: tf.Tensor, A: tf.Tensor, B: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """dA = exp(dt*A) and dBu = dt*B*u, both (batch, L, D, N)."""
    dA = tf.exp(dt[..., None] * A)
    dBu = (dt * u)[..., None] * B[:, :, None, :]
    return dA, dBu


def materialized_scan(
    u: tf.Tensor, dt: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor
) -> tf.Tensor:
    """Materialise dA and dBu as (batch, L, D, N), then a ``tf.scan`` of ``h = dA*h + dBu``."""
    A = tf.cast(A, u.dtype)
    dA, dBu = _discretise(u, dt, A, B)
    h0 = tf.zeros_like(dA[:, 0])
    hs = tf.scan(
        lambda h, x: x[0] * h + x[1],
        (tf.transpose(dA, [1, 0, 2, 3]), tf.transpose(dBu, [1, 0, 2, 3])),
        initializer=h0,
    )  # (L, batch, D, N)
    return tf.einsum("lbdn,bln->bld", hs, C)


def chunked_scan(
    u: tf.Tensor,
    dt: tf.Tensor,
    A: tf.Tensor,
    B: tf.Tensor,
    C: tf.Tensor,
    chunk_size: int = 16,
) -> tf.Tensor:
    """Exact chunked scan: closed form inside chunks of ``chunk_size``, recurrence across them.

    Inside a chunk, with ``S_t = cumsum(dt*A)`` from the chunk start,
    ``h_t = exp(S_t) h_in + sum_{s<=t} exp(S_t - S_s) dBu_s``. Only differences ``S_t - S_s``
    (s <= t) and ``S_t`` itself are exponentiated, all <= 0, so nothing overflows whatever dt
    is (the global ``exp(-cumsum)`` factorisation overflows at L=256). The state entering each
    chunk is carried by a short ``tf.scan`` over chunks. Costs O(L*T*D*N) memory.
    """
    dtype = u.dtype
    A = tf.cast(A, dtype)
    T = int(chunk_size)
    batch = tf.shape(u)[0]
    length = tf.shape(u)[1]
    d_inner, d_state = A.shape[0], A.shape[1]
    # Pad the end with dt = 0 (dA = 1, dBu = 0): the state passes through, outputs dropped.
    pad = (-length) % T
    n_chunks = (length + pad) // T

    def chunks(x: tf.Tensor) -> tf.Tensor:
        """(batch, L, K) -> (batch, chunks, K, T): channels before time so matmuls need no
        transpose of the big (.., T, T) tensors."""
        x = tf.pad(x, [[0, 0], [0, pad], [0, 0]])
        x = tf.reshape(x, tf.stack([batch, n_chunks, T, tf.shape(x)[-1]]))
        return tf.transpose(x, [0, 1, 3, 2])

    dt_c, dtu_c, B_c, C_c = chunks(dt), chunks(dt * u), chunks(B), chunks(C)
    # (batch, chunks, D, N, T)
    S = tf.cumsum(dt_c[:, :, :, None, :] * A[:, :, None], axis=-1)
    dBu = dtu_c[:, :, :, None, :] * B_c[:, :, None, :, :]
    causal = tf.constant(np.tril(np.ones((T, T), dtype=bool)))  # [t, s]: s <= t
    diff = S[..., :, None] - S[..., None, :]  # (batch, chunks, D, N, T, T)
    # where() before exp keeps the masked (positive) differences out of exp and its gradient.
    decay = tf.where(causal, tf.exp(tf.where(causal, diff, tf.zeros_like(diff))), 0.0)
    h_local = tf.linalg.matvec(decay, dBu)  # (batch, chunks, D, N, T), zero initial state
    # Carry: h_out[c] = exp(S_end[c]) * h_out[c-1] + h_local_end[c].
    chunk_decay = tf.transpose(tf.exp(S[..., -1]), [1, 0, 2, 3])  # (chunks, batch, D, N)
    chunk_end = tf.transpose(h_local[..., -1], [1, 0, 2, 3])
    h0 = tf.zeros(tf.stack([batch, d_inner, d_state]), dtype=dtype)
    h_out = tf.scan(lambda h, x: x[0] * h + x[1], (chunk_decay, chunk_end), initializer=h0)
    h_in = tf.concat([h0[None], h_out[:-1]], axis=0)  # state entering each chunk
    h_in = tf.transpose(h_in, [1, 0, 2, 3])  # (batch, chunks, D, N)
    h = h_local + tf.exp(S) * h_in[..., None]
    y = tf.reduce_sum(h * C_c[:, :, None, :, :], axis=3)  # (batch, chunks, D, T)
    y = tf.reshape(tf.transpose(y, [0, 1, 3, 2]), tf.stack([batch, n_chunks * T, d_inner]))
    return y[:, :length]


def associative_scan(
    u: tf.Tensor, dt: tf.Tensor, A: tf.Tensor, B: tf.Tensor, C: tf.Tensor
) -> tf.Tensor:
    """``keras.ops.associative_scan`` over materialised (dA, dBu); not XLA-compatible on TF."""
    A = tf.cast(A, u.dtype)
    dA, dBu = _discretise(u, dt, A, B)

    def combine(
        left: tuple[tf.Tensor, tf.Tensor], right: tuple[tf.Tensor, tf.Tensor]
    ) -> tuple[tf.Tensor, tf.Tensor]:
        # (a1, b1) then (a2, b2): h -> a2*(a1*h + b1) + b2
        return left[0] * right[0], right[0] * left[1] + right[1]

    _, hs = ops.associative_scan(combine, (dA, dBu), axis=1)
    return tf.einsum("bldn,bln->bld", hs, C)


SCANS: dict[str, ScanFn] = {
    "loop": loop_scan,
    "materialized": materialized_scan,
    "chunked": chunked_scan,
    "associative": associative_scan,
}
SCAN_CHOICES: tuple[str, ...] = ("auto", *SCANS)


@functools.lru_cache(maxsize=1)
def _device_kind() -> str:
    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


def resolve_scan(scan: str) -> str:
    """The concrete implementation name for ``scan`` ("auto" -> AUTO_SCAN by device kind)."""
    if scan not in SCAN_CHOICES:
        raise ValueError(f"scan = {scan!r}: expected one of {', '.join(SCAN_CHOICES)}")
    return AUTO_SCAN[_device_kind()] if scan == "auto" else scan


def get_scan(scan: str, chunk_size: int = 16) -> ScanFn:
    """The scan function (u, dt, A, B, C) -> y for ``scan``, ``chunk_size`` bound."""
    name = resolve_scan(scan)
    if name == "chunked":
        return functools.partial(chunked_scan, chunk_size=chunk_size)
    return SCANS[name]


def reference_scan(
    u: np.ndarray, dt: np.ndarray, A: np.ndarray, B: np.ndarray, C: np.ndarray, D: np.ndarray
) -> np.ndarray:
    """Plain float64 loop of the selective scan, y = <h_t, C_t> + D*u_t; shapes as SCANS."""
    u, dt, A, B, C, D = (np.asarray(a, dtype=np.float64) for a in (u, dt, A, B, C, D))
    batch, length, d_inner = u.shape
    h = np.zeros((batch, d_inner, A.shape[1]))
    y = np.empty((batch, length, d_inner))
    for t in range(length):
        dA = np.exp(dt[:, t, :, None] * A[None])
        dBu = (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        h = dA * h + dBu
        y[:, t] = np.einsum("bdn,bn->bd", h, C[:, t]) + D * u[:, t]
    return y


# --------------------------------------------------------------------------- initialisers
@keras.saving.register_keras_serializable(package="reprolab")
class DtBiasInitializer(keras.initializers.Initializer):
    """softplus^-1 of dt drawn log-uniformly in [dt_min, dt_max] (floored), as in Mamba.

    Drawn with numpy from ``seed`` so a seed gives the same bias on every backend.
    """

    def __init__(
        self,
        dt_min: float = DT_MIN,
        dt_max: float = DT_MAX,
        floor: float = DT_INIT_FLOOR,
        seed: int | None = None,
    ) -> None:
        if not 0.0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.dt_min, self.dt_max, self.floor, self.seed = dt_min, dt_max, floor, seed

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        rng = np.random.default_rng(self.seed)
        lo, hi = math.log(self.dt_min), math.log(self.dt_max)
        dt = np.maximum(np.exp(rng.uniform(size=tuple(shape)) * (hi - lo) + lo), self.floor)
        inv_softplus = dt + np.log(-np.expm1(-dt))  # log(exp(dt) - 1), stable
        return ops.convert_to_tensor(inv_softplus, dtype=dtype or "float32")

    def get_config(self) -> dict[str, Any]:
        return {
            "dt_min": self.dt_min,
            "dt_max": self.dt_max,
            "floor": self.floor,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="reprolab")
class S4DRealInitializer(keras.initializers.Initializer):
    """A_log[d, n] = log(n + 1): A = -(1..N) for every channel (S4D-real)."""

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        _d_inner, d_state = shape
        a_log = np.broadcast_to(np.log(np.arange(1, d_state + 1, dtype=np.float64)), shape)
        return ops.convert_to_tensor(np.array(a_log), dtype=dtype or "float32")

    def get_config(self) -> dict[str, Any]:
        return {}


def _torch_linear_init(seed: int | None) -> keras.initializers.Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's nn.Linear default used by the reference."""
    return keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed
    )


def _sub_seed(seed: int | None, name: str) -> int | None:
    return None if seed is None else int_seed(seed, name)


def _as_shape(input_shape: Any) -> tuple[Any, ...]:
    """A shape tuple from what build() gets: a tuple, a TensorShape, or (after .keras load)
    a list, possibly wrapped in a one-element list."""
    if isinstance(input_shape, dict):
        input_shape = next(iter(input_shape.values()))
    shape = list(input_shape)
    if len(shape) == 1 and isinstance(shape[0], list | tuple | tf.TensorShape):
        shape = list(shape[0])
    return tuple(None if d is None else int(d) for d in shape)


def _scan_dtype(compute_dtype: str) -> str:
    # Half precision would lose the state over long sequences: scan in float32 then.
    return "float32" if compute_dtype in ("float16", "bfloat16") else compute_dtype


# --------------------------------------------------------------------------- layers
@keras.saving.register_keras_serializable(package="reprolab")
class RMSNorm(keras.layers.Layer):
    """x / sqrt(mean(x^2) + eps) * scale over the last axis; scale learned, initialised to 1."""

    def __init__(self, epsilon: float = 1e-6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape: Any) -> None:
        shape = _as_shape(input_shape)
        self.scale = self.add_weight(name="scale", shape=(shape[-1],), initializer="ones")
        self.built = True

    def call(self, x: Any) -> Any:
        dtype = self.compute_dtype
        xf = ops.cast(x, _scan_dtype(dtype))
        ms = ops.mean(ops.square(xf), axis=-1, keepdims=True)
        out = xf * ops.rsqrt(ms + self.epsilon) * ops.cast(self.scale, xf.dtype)
        return ops.cast(out, dtype)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return _as_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="reprolab")
class LastTimeStep(keras.layers.Layer):
    """(batch, L, C) -> (batch, C): the last step (a Lambda would need safe_mode=False)."""

    def call(self, x: Any) -> Any:
        return x[:, -1, :]

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        shape = _as_shape(input_shape)
        return (shape[0], shape[-1])


@keras.saving.register_keras_serializable(package="reprolab")
class MambaBlock(keras.layers.Layer):
    """One Mamba-1 mixer: (batch, L, d_model) -> (batch, L, d_model), causal in L.

    ``scan`` picks the selective-scan implementation (see :data:`SCANS`; "auto" uses
    :data:`AUTO_SCAN` for the device TF sees). ``seed`` seeds every initialiser (each weight
    gets its own derived seed); None draws unseeded.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        scan: str = "auto",
        chunk_size: int = 16,
        dt_min: float = DT_MIN,
        dt_max: float = DT_MAX,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        resolve_scan(scan)  # validate now, resolve per device at call time
        if chunk_size < 1:
            raise ValueError(f"chunk_size = {chunk_size}: expected an integer >= 1")
        self.d_model = int(d_model)
        self.d_state = int(d_state)
        self.d_conv = int(d_conv)
        self.expand = int(expand)
        self.d_inner = self.expand * self.d_model
        self.dt_rank = int(dt_rank) if dt_rank is not None else math.ceil(self.d_model / 16)
        self.scan = scan
        self.chunk_size = int(chunk_size)
        self.dt_min = float(dt_min)
        self.dt_max = float(dt_max)
        self.seed = seed

    def build(self, input_shape: Any) -> None:
        shape = _as_shape(input_shape)
        if shape[-1] is not None and shape[-1] != self.d_model:
            raise ValueError(
                f"{self.name}: input has {shape[-1]} features, d_model is {self.d_model}"
            )
        s, di, n = self.seed, self.d_inner, self.d_state
        conv_bound = 1.0 / math.sqrt(self.d_conv)  # PyTorch Conv1d default, fan_in = d_conv
        dt_std = self.dt_rank**-0.5  # reference dt_init="random", dt_scale=1
        self.in_proj = self.add_weight(
            name="in_proj",
            shape=(self.d_model, 2 * di),
            initializer=_torch_linear_init(_sub_seed(s, "in_proj")),
        )
        self.conv_kernel = self.add_weight(
            name="conv_kernel",
            shape=(self.d_conv, di),
            initializer=keras.initializers.RandomUniform(
                -conv_bound, conv_bound, seed=_sub_seed(s, "conv_kernel")
            ),
        )
        self.conv_bias = self.add_weight(
            name="conv_bias",
            shape=(di,),
            initializer=keras.initializers.RandomUniform(
                -conv_bound, conv_bound, seed=_sub_seed(s, "conv_bias")
            ),
        )
        self.x_proj = self.add_weight(
            name="x_proj",
            shape=(di, self.dt_rank + 2 * n),
            initializer=_torch_linear_init(_sub_seed(s, "x_proj")),
        )
        self.dt_proj = self.add_weight(
            name="dt_proj",
            shape=(self.dt_rank, di),
            initializer=keras.initializers.RandomUniform(
                -dt_std, dt_std, seed=_sub_seed(s, "dt_proj")
            ),
        )
        self.dt_bias = self.add_weight(
            name="dt_bias",
            shape=(di,),
            initializer=DtBiasInitializer(self.dt_min, self.dt_max, seed=_sub_seed(s, "dt_bias")),
        )
        self.A_log = self.add_weight(name="A_log", shape=(di, n), initializer=S4DRealInitializer())
        self.D = self.add_weight(name="D", shape=(di,), initializer="ones")
        self.out_proj = self.add_weight(
            name="out_proj",
            shape=(di, self.d_model),
            initializer=_torch_linear_init(_sub_seed(s, "out_proj")),
        )
        self.built = True

    def causal_conv(self, x: Any) -> Any:
        """Depthwise conv over time, left-padded by d_conv-1: output t sees inputs <= t only."""
        k = self.d_conv
        kernel = ops.cast(self.conv_kernel, x.dtype)
        xpad = ops.pad(x, [[0, 0], [k - 1, 0], [0, 0]])
        out = ops.cast(self.conv_bias, x.dtype)
        for i in range(k):  # kernel[k-1] multiplies x_t, kernel[k-1-j] multiplies x_{t-j}
            stop = i - (k - 1)
            out = out + xpad[:, i : (stop if stop < 0 else None), :] * kernel[i]
        return out

    def call(self, x: Any) -> Any:
        dtype = self.compute_dtype
        sdt = _scan_dtype(dtype)
        di, n, r = self.d_inner, self.d_state, self.dt_rank
        xz = ops.matmul(x, ops.cast(self.in_proj, dtype))
        x_in, z = xz[..., :di], xz[..., di:]
        u = ops.silu(self.causal_conv(x_in))
        x_dbl = ops.matmul(u, ops.cast(self.x_proj, dtype))
        dt_low, b_mat, c_mat = x_dbl[..., :r], x_dbl[..., r : r + n], x_dbl[..., r + n :]
        u, dt_low, b_mat, c_mat = (ops.cast(t, sdt) for t in (u, dt_low, b_mat, c_mat))
        dt = ops.softplus(
            ops.matmul(dt_low, ops.cast(self.dt_proj, sdt)) + ops.cast(self.dt_bias, sdt)
        )
        A = -ops.exp(ops.cast(self.A_log, sdt))
        y = get_scan(self.scan, self.chunk_size)(u, dt, A, b_mat, c_mat)
        y = y + u * ops.cast(self.D, sdt)
        y = ops.cast(y, dtype) * ops.silu(z)
        return ops.matmul(y, ops.cast(self.out_proj, dtype))

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return _as_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "d_model": self.d_model,
            "d_state": self.d_state,
            "d_conv": self.d_conv,
            "expand": self.expand,
            "dt_rank": self.dt_rank,
            "scan": self.scan,
            "chunk_size": self.chunk_size,
            "dt_min": self.dt_min,
            "dt_max": self.dt_max,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="reprolab")
class RegimeMixtureHead(keras.layers.Layer):
    """P(next return up) = sum_k g_k(h_t) * sigmoid(a_k + <b_k, e_t>), per day.

    ``h_t`` is the Mamba's state output (what it has read up to day t), ``g = softmax`` of a
    linear map of it: the weights of ``experts`` regimes; ``e_t`` are the day's own inputs at
    ``expert_index`` (today's return). The shape of the filter a regime-switching AR process
    calls for: each regime's next-day direction is a monotone function of today's return,
    and the history decides which regime holds.
    """

    def __init__(
        self, experts: int, expert_index: Sequence[int], seed: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if experts < 1 or not expert_index:
            raise ValueError(f"experts = {experts}, expert_index = {expert_index}")
        self.experts = int(experts)
        self.expert_index = [int(i) for i in expert_index]
        self.seed = seed

    def build(self, input_shape: Any) -> None:
        h_shape = _as_shape(input_shape[0])
        k, e = self.experts, len(self.expert_index)
        self.gate_kernel = self.add_weight(
            name="gate_kernel",
            shape=(h_shape[-1], k),
            initializer=keras.initializers.GlorotUniform(seed=_sub_seed(self.seed, "gate")),
        )
        self.gate_bias = self.add_weight(name="gate_bias", shape=(k,), initializer="zeros")
        self.expert_kernel = self.add_weight(
            name="expert_kernel",
            shape=(e, k),
            initializer=keras.initializers.GlorotUniform(seed=_sub_seed(self.seed, "expert")),
        )
        self.expert_bias = self.add_weight(name="expert_bias", shape=(k,), initializer="zeros")
        self.built = True

    def call(self, inputs: Any) -> Any:
        h, x = inputs
        dtype = self.compute_dtype
        gate = ops.softmax(
            ops.matmul(h, ops.cast(self.gate_kernel, dtype)) + ops.cast(self.gate_bias, dtype)
        )
        e = ops.take(x, self.expert_index, axis=-1)
        expert = ops.sigmoid(
            ops.matmul(e, ops.cast(self.expert_kernel, dtype)) + ops.cast(self.expert_bias, dtype)
        )
        return ops.sum(gate * expert, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, ...]:
        return (*_as_shape(input_shape[0])[:-1], 1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "experts": self.experts,
            "expert_index": self.expert_index,
            "seed": self.seed,
        }


# --------------------------------------------------------------------------- model
def _sigmoid_head(x: Any, seed: int, kw: dict[str, Any]) -> Any:
    """One sigmoid unit per step (or on the last step's vector)."""
    return keras.layers.Dense(
        1,
        activation="sigmoid",
        kernel_initializer=keras.initializers.GlorotUniform(seed=int_seed(seed, "head")),
        name="head",
        **kw,
    )(x)


def _mamba_stack(inputs: Any, arch: MambaTrainParams, seed: int, kw: dict[str, Any]) -> Any:
    """Dense(d_model) -> n_layers x [norm -> MambaBlock -> + residual] -> norm, per step."""
    x = keras.layers.Dense(
        arch.d_model,
        kernel_initializer=keras.initializers.GlorotUniform(seed=int_seed(seed, "embed")),
        name="embed",
        **kw,
    )(inputs)
    for i in range(arch.n_layers):
        h = RMSNorm(name=f"norm_{i}", **kw)(x) if arch.norm == "rms" else x
        h = MambaBlock(
            arch.d_model,
            d_state=arch.d_state,
            d_conv=arch.d_conv,
            expand=arch.expand,
            scan=arch.scan,
            chunk_size=arch.chunk_size,
            seed=int_seed(seed, "mamba", i),
            name=f"mamba_{i}",
            **kw,
        )(h)
        x = keras.layers.Add(name=f"residual_{i}", **kw)([x, h])
    if arch.norm == "rms":
        x = RMSNorm(name="final_norm", **kw)(x)
    return x


def build_mamba_classifier(
    n_features: int,
    window: int,
    arch: MambaTrainParams,
    seed: int = 0,
    dtype: str | None = None,
) -> keras.Model:
    """Window (window, n_features) -> P(next return up), a pre-norm residual Mamba stack.

    Input -> Dense(d_model) -> n_layers x [norm -> MambaBlock -> + residual] -> norm ->
    last step -> Dense(1, sigmoid), sized by ``arch`` (d_model, d_state, d_conv, expand,
    n_layers, norm, scan, chunk_size). ``norm`` "rms" is the reference's pre-norm RMSNorm;
    "none" leaves the residual stream unnormalised: RMSNorm rescales every step to unit size,
    which erases the step's magnitude (the volatility that reveals the regime). Every
    initialiser is seeded from ``seed``; ``dtype`` is a Keras dtype policy name for every layer
    (None: the global policy).
    """
    kw: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
    inputs = keras.Input(shape=(window, n_features), name="window", **kw)
    x = LastTimeStep(name="last_step", **kw)(_mamba_stack(inputs, arch, seed, kw))
    outputs = _sigmoid_head(x, seed, kw)
    return keras.Model(inputs, outputs, name="mamba_classifier")


def _sequence_parts(
    n_features: int,
    arch: MambaTrainParams,
    seed: int,
    kw: dict[str, Any],
    expert_index: Sequence[int],
) -> tuple[Any, Any, Any]:
    """(inputs, the stack's output at every day, the head's P(up) at every day)."""
    inputs = keras.Input(shape=(None, n_features), name="series", **kw)
    x = _mamba_stack(inputs, arch, seed, kw)
    if arch.experts > 0:
        head = RegimeMixtureHead(
            arch.experts, expert_index, seed=int_seed(seed, "head"), name="head", **kw
        )
        return inputs, x, head([x, inputs])
    return inputs, x, _sigmoid_head(x, seed, kw)


def build_mamba_sequence(
    n_features: int,
    arch: MambaTrainParams,
    seed: int = 0,
    dtype: str | None = None,
    expert_index: Sequence[int] = (0,),
) -> keras.Model:
    """Series (L, n_features) -> P(next return up) at every day (L, 1), causal in L.

    The classifier's stack (:func:`build_mamba_classifier`) with the head applied at every
    step instead of the last: the prediction at day t reads days <= t only, so one pass over
    a whole series predicts every day of it, and a step-by-step recurrence
    (:mod:`reprolab.serve.mamba_step`) reproduces it one new day at a time. With
    ``arch.experts`` > 0 the head is a :class:`RegimeMixtureHead` whose experts read the
    input columns ``expert_index``; with 0, one sigmoid unit.
    """
    kw: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
    inputs, _, p_up = _sequence_parts(n_features, arch, seed, kw, expert_index)
    return keras.Model(inputs, p_up, name="mamba_sequence")


def build_mamba_forecasting(
    n_features: int,
    arch: MambaTrainParams,
    n_forecast: int,
    seed: int = 0,
    expert_index: Sequence[int] = (0,),
) -> keras.Model:
    """The training form of :func:`build_mamba_sequence`: beside P(up), a linear map of the
    same state forecasts each of ``n_forecast`` next-day inputs at every day,
    (L, 1 + n_forecast). Forecasting what comes next (tomorrow's return, range and volume,
    which the regime's volatility drives) teaches the state the regime from every day's
    evidence, not from the direction labels alone. :func:`inference_model` keeps the P(up)
    path only."""
    inputs, x, p_up = _sequence_parts(n_features, arch, seed, {}, expert_index)
    forecast = keras.layers.Dense(
        n_forecast,
        kernel_initializer=keras.initializers.GlorotUniform(seed=int_seed(seed, "forecast")),
        name="forecast",
    )(x)
    both = keras.layers.Concatenate(name="p_up_and_forecast")([p_up, forecast])
    return keras.Model(inputs, both, name="mamba_forecasting")


def inference_model(model: keras.Model) -> keras.Model:
    """The P(up) path of a (possibly forecasting) Mamba: the model that is saved, served and
    stepped, sharing the trained layers."""
    if model.name == "mamba_sequence":
        return model
    return keras.Model(model.inputs, model.get_layer("head").output, name="mamba_sequence")


def load_mamba_model(path: str | Path, compile: bool = True) -> keras.Model:
    """Load a ``.keras`` file of a Mamba or comparator classifier (registers the classes)."""
    from reprolab.guard.keras.saving import load_keras_model
    from reprolab.models.mamba import keras_metrics  # noqa: F401  (registers the metric)

    return load_keras_model(path, compile=compile)
