"""The numpy path of the PINN: the same function as the Keras model, with forward-mode
derivatives through the MLP, for serving without TensorFlow (see :mod:`.maths`)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    pass

from reprolab.models.pinn.maths import (
    DERIVATIVES,
    EXPORT_FORMAT,
    N_FEATURES,
    PRECISIONS,
    Precision,
    coords_array,
    normalisation,
    price_greeks,
    residual_at,
)

log = logging.getLogger(__name__)


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
        self._norm = normalisation({k: tuple(v) for k, v in spec["bounds"].items()})

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
        c = coords_array(x, tau, sigma, r)
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
        c = coords_array(x, tau, sigma, r)
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
