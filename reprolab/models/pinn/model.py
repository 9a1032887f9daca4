"""Physics-informed network for European option prices and Greeks (Black–Scholes PDE).

The network prices CALLS in normalised form ``v = C/K`` as a function of the model coordinates
``(x = ln(S/K), tau, sigma, r)``; puts come from put-call parity with the same network,
``P/K = v - e^x + e^{-r tau}``, so parity holds to rounding.

Function (identical in the Keras model and in the numpy serving path :class:`NumpyPinn`)::

    T   = tau + tau_floor                 (tau_floor = 1e-8 y keeps tau = 0 finite)
    s   = sigma * sqrt(T)                 total volatility to expiry
    fwd = x + r * tau                     log forward moneyness
    u   = fwd / s                         forward moneyness in standard deviations
    features (6): (x - xc)/xh, 2 sqrt(T / tau_max) - 1, (sigma - sc)/sh, (r - rc)/rh,
                  2 s / (sigma_max sqrt(tau_max)) - 1, tanh(u / u_scale)
    n   = MLP(features)                   tanh hidden layers, linear scalar output
    q   = c * s                           c = 1 / (sqrt(2 pi) ln 2): exact ATM value at n = 0
    v   = e^{-r tau} * q * softplus((e^fwd - 1) / q + n)

``q * softplus(z / q)`` is a softplus localisation of the discounted forward intrinsic value
``e^{-r tau} max(e^fwd - 1, 0) = max(e^x - e^{-r tau}, 0)``: at expiry it is the payoff, deep in
the money the forward, deep out of the money zero; the network only learns the correction ``n``.

Greeks (label units, see :mod:`reprolab.datasets.options.blackscholes`) from the derivatives
of ``v``:
``delta = v_x e^{-x}``, ``gamma = (v_xx - v_x) e^{-2x} / K``, ``vega = K v_sigma``,
``theta = -K v_tau`` (per year), ``rho = K v_r``. The Keras model gets them by automatic
differentiation, :class:`NumpyPinn` by forward-mode differentiation through the MLP.

PDE (normalised coordinates, per year):
``R = v_tau - 0.5 sigma^2 v_xx - (r - 0.5 sigma^2) v_x + r v``.

This module does not import TensorFlow at import time: the Keras classes are created on first
use (``PinnPricer`` attribute access, :func:`build_pinn`, :func:`load_pinn_model`), so the numpy
serving path stays free of it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from reprolab.core.config import PinnLossWeights
from reprolab.core.io import atomic_path
from reprolab.core.seeding import int_seed

if TYPE_CHECKING:
    import keras
    import pandas as pd

log = logging.getLogger(__name__)

COORDS = ("x", "tau", "sigma", "r")
DERIVATIVES = ("v", "v_x", "v_tau", "v_sigma", "v_r", "v_xx")
N_FEATURES = 6
TAU_FLOOR = 1e-8
BASE_WIDTH = 1.0 / (math.sqrt(2.0 * math.pi) * math.log(2.0))
U_SCALE = 4.0
EXPORT_FORMAT = "reprolab.pinn/1"
# The declared box of params.yaml (options.generate.domain) in model coordinates.
DEFAULT_BOUNDS: dict[str, tuple[float, float]] = {
    "x": (math.log(0.5), math.log(2.0)),
    "tau": (1.0 / 365.0, 2.0),
    "sigma": (0.05, 0.8),
    "r": (0.0, 0.1),
}
DEFAULT_LOSS_WEIGHTS: dict[str, float] = dataclasses.asdict(PinnLossWeights())
LOSS_TERMS = ("price", "delta", "pde", "terminal", "boundary")
Precision = Literal["float64", "float32"]
PRECISIONS: tuple[str, ...] = ("float64", "float32")


# --------------------------------------------------------------------------- shared maths
def pde_residual(v: Any, v_x: Any, v_xx: Any, v_tau: Any, sigma: Any, r: Any) -> Any:
    """Black–Scholes residual in normalised coordinates (per year); numpy or tensors."""
    half_var = 0.5 * sigma * sigma
    return v_tau - half_var * v_xx - (r - half_var) * v_x + r * v


def _normalisation(bounds: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    def centre_half(name: str) -> tuple[float, float]:
        lo, hi = (float(b) for b in bounds[name])
        half = (hi - lo) / 2.0
        return (lo + hi) / 2.0, half if half > 0 else 1.0

    xc, xh = centre_half("x")
    sc, sh = centre_half("sigma")
    rc, rh = centre_half("r")
    tau_max = float(bounds["tau"][1])
    sigma_max = float(bounds["sigma"][1])
    return {
        "xc": xc,
        "xh": xh,
        "sc": sc,
        "sh": sh,
        "rc": rc,
        "rh": rh,
        "sqrt_tau_max": math.sqrt(tau_max),
        "s_max": sigma_max * math.sqrt(tau_max),
    }


def greeks_from_derivatives(
    d: Mapping[str, Any],
    x: Any,
    tau: Any,
    r: Any,
    K: Any = 1.0,
    kind: Literal["call", "put"] = "call",
    xp: Any = np,
) -> dict[str, Any]:
    """Price and Greeks (units of :mod:`reprolab.datasets.options.blackscholes`) from the
    derivatives of v = C/K.

    Puts use parity on the same network: P/K = v - e^x + e^{-r tau} and its derivatives.
    Arrays with ``xp = numpy``, Python floats with ``xp = ScalarMath`` (the 1-row path).
    """
    if kind not in ("call", "put"):
        raise ValueError(f"kind must be 'call' or 'put' (got {kind!r})")
    v, v_x, v_xx = d["v"], d["v_x"], d["v_xx"]
    v_tau, v_sigma, v_r = d["v_tau"], d["v_sigma"], d["v_r"]
    if kind == "put":
        ex, disc = xp.exp(x), xp.exp(-r * tau)
        v = v - ex + disc
        v_x = v_x - ex
        v_xx = v_xx - ex
        v_tau = v_tau - r * disc
        v_r = v_r - tau * disc
    e_mx = xp.exp(-x)
    return {
        "price": K * v,
        "delta": v_x * e_mx,
        "gamma": (v_xx - v_x) * e_mx * e_mx / K,
        "vega": K * v_sigma,
        "theta": -K * v_tau,
        "rho": K * v_r,
    }


def _flat_inputs(*values: Any) -> list[np.ndarray]:
    """Broadcast to one shape and flatten, as float64."""
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
    return [a.ravel() for a in arrays]


def price_greeks(
    model: Any, S: Any, K: Any, tau: Any, sigma: Any, r: Any, kind: Literal["call", "put"] = "call"
) -> dict[str, np.ndarray]:
    """Price and Greeks of ``model`` (anything with ``derivatives(x, tau, sigma, r)``)."""
    S, K, tau, sigma, r = _flat_inputs(S, K, tau, sigma, r)
    x = np.log(S / K)
    return greeks_from_derivatives(model.derivatives(x, tau, sigma, r), x, tau, r, K, kind)


def residual_at(model: Any, x: Any, tau: Any, sigma: Any, r: Any) -> np.ndarray:
    """The PDE residual R of ``model`` at the points (per year)."""
    x, tau, sigma, r = _flat_inputs(x, tau, sigma, r)
    d = model.derivatives(x, tau, sigma, r)
    return pde_residual(d["v"], d["v_x"], d["v_xx"], d["v_tau"], sigma, r)


def _coords_array(x: Any, tau: Any, sigma: Any, r: Any) -> np.ndarray:
    return np.stack(_flat_inputs(x, tau, sigma, r), axis=1)


def frame_coords(df: pd.DataFrame) -> np.ndarray:
    """The (n, 4) float64 array of model coordinates (x, tau, sigma, r) of a frame."""
    return df[list(COORDS)].to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------- numpy path
class ScalarMath:
    """The element functions the shared formulas need, for Python floats (the 1-row path)."""

    exp = staticmethod(math.exp)
    sqrt = staticmethod(math.sqrt)
    tanh = staticmethod(math.tanh)
    log1p = staticmethod(math.log1p)
    abs = staticmethod(abs)
    maximum = staticmethod(max)


def _softplus(a: Any, xp: Any) -> Any:
    return xp.maximum(a, 0.0) + xp.log1p(xp.exp(-xp.abs(a)))


def _input_layer(
    x: Any,
    tau: Any,
    sigma: Any,
    r: Any,
    sp: Mapping[str, Any],
    nm: Mapping[str, float],
    xp: Any,
    derivatives: bool = True,
) -> tuple[list[list[Any]], dict[str, Any]]:
    """The 6 features and their derivatives, as 6 rows of 6 entries (floats or arrays).

    Row 0 holds the features, rows 1-4 their derivatives along x, tau, sigma, r, row 5 their
    second derivative along x. ``xp`` is numpy (arrays) or :class:`ScalarMath` (floats), so
    the batch and the single-row paths evaluate the very same formulas. Without
    ``derivatives`` only row 0 is built.
    """
    sq = xp.sqrt(tau + sp["tau_floor"])
    s = sigma * sq
    ds = (0.0, sigma / (2.0 * sq), sq, 0.0)  # d/d(x, tau, sigma, r)
    fwd = x + r * tau
    dfwd = (1.0, r, 0.0, tau)
    u = fwd / s
    tu = xp.tanh(u / sp["u_scale"])
    parts = {"s": s, "ds": ds, "fwd": fwd, "dfwd": dfwd}
    rows = [
        [
            (x - nm["xc"]) / nm["xh"],
            2.0 * sq / nm["sqrt_tau_max"] - 1.0,
            (sigma - nm["sc"]) / nm["sh"],
            (r - nm["rc"]) / nm["rh"],
            2.0 * s / nm["s_max"] - 1.0,
            tu,
        ]
    ]
    if not derivatives:
        return rows, parts
    du = [(dfwd[j] - u * ds[j]) / s for j in range(4)]
    dtu = (1.0 - tu * tu) / sp["u_scale"]
    unit = (1.0 / nm["xh"], 1.0 / (sq * nm["sqrt_tau_max"]), 1.0 / nm["sh"], 1.0 / nm["rh"])
    for j in range(4):
        row = [0.0] * 4 + [2.0 * ds[j] / nm["s_max"], dtu * du[j]]
        row[j] = unit[j]
        rows.append(row)
    rows.append([0.0] * 5 + [-2.0 * tu * dtu / sp["u_scale"] * du[0] * du[0]])
    return rows, parts


def _head_value(n: Any, tau: Any, r: Any, parts: Mapping[str, Any], base_width: float) -> Any:
    """v = D q softplus((e^fwd - 1)/q + n) alone (numpy), for prices without Greeks."""
    q = base_width * parts["s"]
    return np.exp(-r * tau) * q * _softplus((np.exp(parts["fwd"]) - 1.0) / q + n, np)


def _head(
    n: Any,
    dn: Sequence[Any],
    nxx: Any,
    tau: Any,
    r: Any,
    parts: Mapping[str, Any],
    xp: Any,
    base_width: float,
) -> dict[str, Any]:
    """v = D q softplus(A), A = (e^fwd - 1)/q + n, and its derivatives (module docstring)."""
    s, ds, fwd, dfwd = parts["s"], parts["ds"], parts["fwd"], parts["dfwd"]
    D = xp.exp(-r * tau)
    dD = (0.0, -r * D, 0.0, -tau * D)
    q = base_width * s
    E = xp.exp(fwd)
    zz = E - 1.0
    dA = [E * dfwd[j] / q - zz / (q * q) * (base_width * ds[j]) + dn[j] for j in range(4)]
    A = zz / q + n
    P = _softplus(A, xp)
    sA = 0.5 * (1.0 + xp.tanh(0.5 * A))
    dv = [dD[j] * q * P + D * P * base_width * ds[j] + D * q * sA * dA[j] for j in range(4)]
    return {
        "v": D * q * P,
        "v_x": dv[0],
        "v_tau": dv[1],
        "v_sigma": dv[2],
        "v_r": dv[3],
        "v_xx": D * q * (sA * (E / q + nxx) + sA * (1.0 - sA) * dA[0] * dA[0]),
    }


class PricingMethods:
    """Greeks and PDE residual for any class with ``derivatives(x, tau, sigma, r)``
    (the numpy serving path and the Keras model share them)."""

    def greeks(
        self,
        S: Any,
        K: Any,
        tau: Any,
        sigma: Any,
        r: Any,
        kind: Literal["call", "put"] = "call",
    ) -> dict[str, np.ndarray]:
        """Price and Greeks in the units of
        :func:`reprolab.datasets.options.blackscholes.bs_price_greeks`."""
        return price_greeks(self, S, K, tau, sigma, r, kind)

    def residual(self, x: Any, tau: Any, sigma: Any, r: Any) -> np.ndarray:
        """The PDE residual R at the points (per year)."""
        return residual_at(self, x, tau, sigma, r)


def _value_layers(
    kernels: Sequence[np.ndarray], biases: Sequence[np.ndarray], dtype: np.dtype
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The MLP rewritten for values alone with sigma(2z) = (1 + tanh z)/2 in place of tanh.

    Each hidden layer computes a = -2z directly (kernel and bias scaled by -2) and then
    sigma = 1/(1 + e^a): three passes over the activations where tanh (numpy's is not
    vectorised like its exp) took most of the time. The next layer takes sigma instead of
    h = 2 sigma - 1: W h + b = 2W sigma + (b - sum_in W). Folded in float64, then cast.
    """
    out = []
    last = len(kernels) - 1
    for i, (k, b) in enumerate(zip(kernels, biases, strict=True)):
        k, b = np.asarray(k, np.float64), np.asarray(b, np.float64)
        if i:  # the input is sigma, not tanh
            k, b = 2.0 * k, b - k.sum(axis=0)
        if i < last:  # this layer yields -2z, the argument of e^(-2z)
            k, b = -2.0 * k, -2.0 * b
        out.append((np.ascontiguousarray(k, dtype), np.ascontiguousarray(b, dtype)))
    return out


class NumpyPinn(PricingMethods):
    """The exported PINN in pure numpy, with analytic (forward-mode) derivatives.

    Batches go through :meth:`derivatives` (or :meth:`price_k`, values only); a single
    contract through :meth:`scalar_derivatives`, which runs the same formulas on Python
    floats and one (6, 1, width) slab per layer, so it costs tens of microseconds.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        kernels: list[np.ndarray],
        biases: list[np.ndarray],
        precision: Precision = "float64",
    ):
        if spec.get("format") != EXPORT_FORMAT:
            raise ValueError(f"unknown PINN export format {spec.get('format')!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} (got {precision!r})")
        self.spec = spec
        self.precision = precision
        dtype = np.dtype(precision)
        self.kernels = [np.ascontiguousarray(k, dtype=dtype) for k in kernels]
        self.biases = [np.ascontiguousarray(b, dtype=dtype) for b in biases]
        self._values = _value_layers(kernels, biases, dtype)
        # the output layer as a vector and a float: the single-row path's last step
        self._output = np.ascontiguousarray(self.kernels[-1][:, 0])
        self._output_bias = float(self.biases[-1][0])
        self._norm = _normalisation({k: tuple(v) for k, v in spec["bounds"].items()})

    @classmethod
    def load(cls, path: str | Path, precision: Precision = "float64") -> NumpyPinn:
        """Read a file written by :func:`export_weights`.

        ``precision`` is the arithmetic of the MLP layers (inputs, features and the output
        head are always float64): ``float32`` runs batches 3-6x faster and agrees
        with float64 to about 1e-7 K in price.
        """
        with np.load(path, allow_pickle=False) as z:
            spec = json.loads(bytes(z["spec"]).decode("utf-8"))
            n = int(spec["n_layers"])
            kernels = [z[f"kernel_{i}"] for i in range(n)]
            biases = [z[f"bias_{i}"] for i in range(n)]
        return cls(spec, kernels, biases, precision)

    def _hidden(self, slab: np.ndarray) -> np.ndarray:
        """Forward mode through the hidden layers: ``slab`` is (k, ..., width), k = 1 or 6.

        Row 0 carries values; with k = 6, rows 1-4 the four first derivatives and row 5 the
        second derivative along x (chain rule through tanh: h'' = -2 h h'). Written with few,
        in-place numpy calls: on one contract the call overhead is the cost.
        """
        for kernel, bias in zip(self.kernels[:-1], self.biases[:-1], strict=True):
            z = slab @ kernel
            z0 = z[0]
            z0 += bias
            h = np.tanh(z0)
            if len(z) == 1:
                slab = h[None]
                continue
            curvature = z[1] * z[1]
            curvature *= h
            curvature += curvature
            z[5] -= curvature  # z_xx - 2 h z_x^2, scaled by g = 1 - h^2 below
            z *= 1.0 - h * h
            z[0] = h
            slab = z
        return slab

    def _propagate(self, slab: np.ndarray) -> np.ndarray:
        """:meth:`_hidden`, then the linear output layer: (k, ..., 1), float64."""
        z = self._hidden(slab.astype(self.kernels[0].dtype, copy=False)) @ self.kernels[-1]
        z[0] += self.biases[-1]
        return z.astype(np.float64, copy=False)

    def derivatives(
        self, x: Any, tau: Any, sigma: Any, r: Any, chunk: int = 2048
    ) -> dict[str, np.ndarray]:
        """v = C/K and v_x, v_tau, v_sigma, v_r, v_xx (flattened, broadcast inputs).

        Evaluated ``chunk`` rows at a time: the forward-mode slab takes (6, rows, width) floats
        per layer.
        """
        c = _coords_array(x, tau, sigma, r)
        parts = [self._derivatives(c[i : i + chunk]) for i in range(0, max(len(c), 1), chunk)]
        return {k: np.concatenate([p[k] for p in parts]) for k in DERIVATIVES}

    def _derivatives(self, c: np.ndarray) -> dict[str, np.ndarray]:
        x, tau, sigma, r = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
        rows, parts = _input_layer(x, tau, sigma, r, self.spec, self._norm, np)
        n = len(x)
        slab = np.empty((6, n, N_FEATURES))
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                slab[i, :, j] = value
        out = self._propagate(slab)[:, :, 0]
        return _head(out[0], out[1:5], out[5], tau, r, parts, np, self.spec["base_width"])

    def scalar_derivatives(self, x: float, tau: float, sigma: float, r: float) -> dict[str, float]:
        """:meth:`derivatives` for one contract, as floats, without per-row numpy overhead."""
        rows, parts = _input_layer(x, tau, sigma, r, self.spec, self._norm, ScalarMath)
        out = (self._hidden(np.array(rows, dtype=self.kernels[0].dtype)) @ self._output).tolist()
        n = out[0] + self._output_bias
        return _head(n, out[1:5], out[5], tau, r, parts, ScalarMath, self.spec["base_width"])

    def price_k(self, x: Any, tau: Any, sigma: Any, r: Any, chunk: int = 4096) -> np.ndarray:
        """v = C/K only: values without derivatives (about 6x less work than ``derivatives``)."""
        c = _coords_array(x, tau, sigma, r)
        out = []
        for i in range(0, max(len(c), 1), chunk):
            x_, tau_, sigma_, r_ = c[i : i + chunk].T
            rows, parts = _input_layer(x_, tau_, sigma_, r_, self.spec, self._norm, np, False)
            a = np.stack([np.broadcast_to(v, x_.shape) for v in rows[0]], axis=1)
            a = a.astype(self._values[0][0].dtype)
            for kernel, bias in self._values[:-1]:
                a = a @ kernel
                a += bias
                with np.errstate(over="ignore"):  # e^a = inf gives sigma = 0 exactly
                    np.exp(a, out=a)
                a += 1.0
                np.reciprocal(a, out=a)
            kernel, bias = self._values[-1]
            n = (a @ kernel + bias)[:, 0].astype(np.float64)
            out.append(_head_value(n, tau_, r_, parts, self.spec["base_width"]))
        return np.concatenate(out)


# --------------------------------------------------------------------------- Keras model
@functools.cache
def _keras_classes() -> dict[str, type]:
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="reprolab")
    class PinnPricer(PricingMethods, keras.Model):
        """v = C/K of a European call (see the module docstring); trains with its own steps.

        ``call`` takes a (batch, 4) array of (x, tau, sigma, r), or a dict whose ``"data"``
        entry is one, and returns v with shape (batch, 1). ``train_step`` takes
        ``x = {"data", optional "interior", "terminal", "boundary"}`` (each (batch, 4)) and
        ``y = {"data": (batch, 2) call_price_k and call_delta, "terminal"/"boundary":
        (batch, 1) call_price_k}``: the loss terms present are the keys present.
        """

        def __init__(
            self,
            hidden: int = 64,
            depth: int = 3,
            bounds: Mapping[str, Any] | None = None,
            loss_weights: Mapping[str, float] | None = None,
            seed: int = 0,
            tau_floor: float = TAU_FLOOR,
            base_width: float = BASE_WIDTH,
            u_scale: float = U_SCALE,
            **kwargs: Any,
        ) -> None:
            kwargs.setdefault("dtype", "float64")
            super().__init__(**kwargs)
            self.hidden = int(hidden)
            self.depth = int(depth)
            b = dict(DEFAULT_BOUNDS) if bounds is None else dict(bounds)
            self.bounds = {k: [float(b[k][0]), float(b[k][1])] for k in COORDS}
            self.pinn_loss_weights = {**DEFAULT_LOSS_WEIGHTS, **dict(loss_weights or {})}
            self.seed = int(seed)
            self.tau_floor = float(tau_floor)
            self.base_width = float(base_width)
            self.u_scale = float(u_scale)
            self._norm = _normalisation(self.bounds)
            self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *LOSS_TERMS)}

        def build(self, input_shape: Any = None) -> None:
            sizes = [N_FEATURES, *([self.hidden] * self.depth), 1]
            self.kernels = []
            self.biases = []
            for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
                last = i == len(sizes) - 2
                init = (
                    keras.initializers.Zeros()
                    if last
                    else keras.initializers.GlorotUniform(seed=int_seed(self.seed, "pinn", i))
                )
                self.kernels.append(
                    self.add_weight(
                        shape=(n_in, n_out), initializer=init, name=f"kernel_{i}", dtype="float64"
                    )
                )
                self.biases.append(
                    self.add_weight(
                        shape=(n_out,), initializer="zeros", name=f"bias_{i}", dtype="float64"
                    )
                )
            self.built = True

        # ---------------------------------------------------------------- the function
        def price_k_tensor(self, coords: tf.Tensor) -> tf.Tensor:
            """v (batch,) for a float64 (batch, 4) tensor of raw coordinates."""
            nm = self._norm
            x, tau, sigma, r = (coords[:, i] for i in range(4))
            sq = tf.sqrt(tau + self.tau_floor)
            s = sigma * sq
            fwd = x + r * tau
            u = fwd / s
            feats = tf.stack(
                [
                    (x - nm["xc"]) / nm["xh"],
                    2.0 * sq / nm["sqrt_tau_max"] - 1.0,
                    (sigma - nm["sc"]) / nm["sh"],
                    (r - nm["rc"]) / nm["rh"],
                    2.0 * s / nm["s_max"] - 1.0,
                    tf.tanh(u / self.u_scale),
                ],
                axis=1,
            )
            h = feats
            last = len(self.kernels) - 1
            for i, (W, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
                h = tf.matmul(h, W) + b
                if i < last:
                    h = tf.tanh(h)
            n = h[:, 0]
            q = self.base_width * s
            A = (tf.exp(fwd) - 1.0) / q + n
            return tf.exp(-r * tau) * q * tf.nn.softplus(A)

        def call(self, inputs: Any) -> tf.Tensor:
            if isinstance(inputs, dict):
                inputs = inputs["data"]
            coords = tf.cast(inputs, tf.float64)
            return self.price_k_tensor(coords)[:, None]

        def derivative_tensors(
            self, coords: tf.Tensor, second: bool = True
        ) -> dict[str, tf.Tensor]:
            """v and its first derivatives (and v_xx when ``second``) by autodiff."""
            coords = tf.cast(coords, tf.float64)
            with tf.GradientTape() as outer:
                outer.watch(coords)
                with tf.GradientTape() as inner:
                    inner.watch(coords)
                    v = self.price_k_tensor(coords)
                g = inner.gradient(v, coords)
                g_x = g[:, 0]
            out = {
                "v": v,
                "v_x": g_x,
                "v_tau": g[:, 1],
                "v_sigma": g[:, 2],
                "v_r": g[:, 3],
            }
            if second:
                out["v_xx"] = outer.gradient(g_x, coords)[:, 0]
            return out

        def derivatives(
            self, x: Any, tau: Any, sigma: Any, r: Any, chunk: int = 65536
        ) -> dict[str, np.ndarray]:
            """Numpy v and its derivatives (names of :data:`DERIVATIVES`), in chunks.

            One contract goes through :attr:`_single_fn` (a fixed (1, 4) signature, XLA
            compiled once: about 0.5 ms a call on CPU instead of 0.8 ms), never ``predict``.
            """
            c = _coords_array(x, tau, sigma, r)
            if len(c) == 1:
                return {k: t.numpy() for k, t in self._single_fn(tf.constant(c)).items()}
            parts = []
            for i in range(0, len(c), chunk):
                d = self._derivatives_fn(tf.constant(c[i : i + chunk]))
                parts.append({k: t.numpy() for k, t in d.items()})
            return {k: np.concatenate([p[k] for p in parts]) for k in DERIVATIVES}

        def _traced(self, name: str, rows: int | None, xla: bool) -> Callable[..., Any]:
            """``derivative_tensors`` as one tf.function per signature, built once."""
            fn = self.__dict__.get(name)
            if fn is None:
                fn = tf.function(
                    self.derivative_tensors,
                    input_signature=[tf.TensorSpec([rows, 4], tf.float64)],
                    reduce_retracing=True,
                    autograph=False,
                    jit_compile=xla,
                )
                self.__dict__[name] = fn
            return fn

        @property
        def _derivatives_fn(self) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
            # Batches of any size: a graph, not XLA (XLA would compile again for every size).
            return self._traced("_cached_derivatives_fn", None, xla=False)

        @property
        def _single_fn(self) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
            return self._traced("_cached_single_fn", 1, xla=True)

        # ---------------------------------------------------------------- training
        def loss_terms(self, x: Mapping[str, Any], y: Mapping[str, Any]) -> dict[str, tf.Tensor]:
            """The per-term mean squared errors present in the batch (see the class doc)."""
            terms: dict[str, tf.Tensor] = {}
            if "data" in x:
                data = tf.cast(x["data"], tf.float64)
                target = tf.cast(y["data"], tf.float64)
                d = self.derivative_tensors(data, second=False)
                terms["price"] = tf.reduce_mean(tf.square(d["v"] - target[:, 0]))
                delta = d["v_x"] * tf.exp(-data[:, 0])
                terms["delta"] = tf.reduce_mean(tf.square(delta - target[:, 1]))
            if "interior" in x:
                pts = tf.cast(x["interior"], tf.float64)
                di = self.derivative_tensors(pts, second=True)
                sigma, r = pts[:, 2], pts[:, 3]
                res = pde_residual(di["v"], di["v_x"], di["v_xx"], di["v_tau"], sigma, r)
                # time-weighted: R sqrt(tau) is a price error per sqrt(year)
                weighted = res * tf.sqrt(pts[:, 1] + self.tau_floor)
                terms["pde"] = tf.reduce_mean(tf.square(weighted))
            for name in ("terminal", "boundary"):
                if name in x:
                    v = self.price_k_tensor(tf.cast(x[name], tf.float64))
                    tgt = tf.reshape(tf.cast(y[name], tf.float64), [-1])
                    terms[name] = tf.reduce_mean(tf.square(v - tgt))
            return terms

        def _total(self, terms: Mapping[str, tf.Tensor]) -> tf.Tensor:
            return tf.add_n([self.pinn_loss_weights[k] * t for k, t in terms.items()])

        def _report(self, loss: tf.Tensor, terms: Mapping[str, tf.Tensor]) -> dict[str, Any]:
            self.trackers["loss"].update_state(loss)
            for k, t in terms.items():
                self.trackers[k].update_state(t)
            return {k: self.trackers[k].result() for k in ("loss", *terms)}

        def train_step(self, data: Any) -> dict[str, Any]:
            x, y = data[0], data[1]
            with tf.GradientTape() as tape:
                terms = self.loss_terms(x, y)
                loss = self._total(terms)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            return self._report(loss, terms)

        def test_step(self, data: Any) -> dict[str, Any]:
            x, y = data[0], data[1]
            terms = self.loss_terms({"data": x["data"]}, {"data": y["data"]})
            return self._report(self._total(terms), terms)

        @property
        def metrics(self) -> list[Any]:
            return list(self.trackers.values())

        def get_config(self) -> dict[str, Any]:
            return {
                "name": self.name,
                "trainable": self.trainable,
                "dtype": "float64",
                "hidden": self.hidden,
                "depth": self.depth,
                "bounds": self.bounds,
                "loss_weights": dict(self.pinn_loss_weights),
                "seed": self.seed,
                "tau_floor": self.tau_floor,
                "base_width": self.base_width,
                "u_scale": self.u_scale,
            }

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> PinnPricer:
            return cls(**config)

    return {"PinnPricer": PinnPricer}


def __getattr__(name: str) -> Any:  # PinnPricer is created (and registered) on first use
    if name == "PinnPricer":
        return _keras_classes()["PinnPricer"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_pinn(
    hidden: int = 64,
    depth: int = 3,
    bounds: Mapping[str, Any] | None = None,
    loss_weights: Mapping[str, float] | None = None,
    seed: int = 0,
) -> keras.Model:
    """A built (weights created) :class:`PinnPricer`."""
    cls = _keras_classes()["PinnPricer"]
    model = cls(hidden=hidden, depth=depth, bounds=bounds, loss_weights=loss_weights, seed=seed)
    model.build((None, 4))
    return model


def load_pinn_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` file of a :class:`PinnPricer` (registers the class first)."""
    import keras

    _keras_classes()
    return keras.models.load_model(path, compile=compile)


def pinn_compile_kwargs(learning_rate: float, epsilon: float = 1e-7) -> dict[str, Any]:
    """Adam with a float learning rate (the guard halves it on NaN); no XLA (slower on CPU).

    The loss terms are tiny (price MSE ~1e-7), so a small ``epsilon`` keeps Adam's steps
    from being damped once the gradients fall near the default 1e-7.
    """
    import keras

    return {
        "optimizer": keras.optimizers.Adam(learning_rate=learning_rate, epsilon=epsilon),
        "jit_compile": False,
    }


# --------------------------------------------------------------------------- export
def export_weights(model: keras.Model, path: str | Path) -> Path:
    """Write every weight plus a JSON spec of the transforms to ``path`` (.npz), atomically."""
    spec = {
        "format": EXPORT_FORMAT,
        "inputs": list(COORDS),
        "output": "v = C/K of a call = exp(-r tau) q softplus((exp(x + r tau) - 1) / q + n), "
        "q = base_width sigma sqrt(tau + tau_floor); puts by parity",
        "features": [
            "(x - xc)/xh",
            "2 sqrt(tau + tau_floor)/sqrt(tau_max) - 1",
            "(sigma - sc)/sh",
            "(r - rc)/rh",
            "2 s/(sigma_max sqrt(tau_max)) - 1",
            "tanh(((x + r tau)/s)/u_scale)",
        ],
        "activation": "tanh",
        "n_layers": len(model.kernels),
        "hidden": model.hidden,
        "depth": model.depth,
        "bounds": model.bounds,
        "tau_floor": model.tau_floor,
        "base_width": model.base_width,
        "u_scale": model.u_scale,
    }
    payload: dict[str, np.ndarray] = {
        "spec": np.frombuffer(json.dumps(spec, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    }
    for i, (W, b) in enumerate(zip(model.kernels, model.biases, strict=True)):
        payload[f"kernel_{i}"] = np.asarray(W.numpy(), dtype=np.float64)
        payload[f"bias_{i}"] = np.asarray(b.numpy(), dtype=np.float64)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **payload)
    return path
