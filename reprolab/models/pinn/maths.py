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

This module holds the maths both implementations share (constants, normalisation, Greeks
from derivatives, the PDE residual); :mod:`reprolab.models.pinn.numpy_model` is the numpy
path, :mod:`reprolab.models.pinn.model` the Keras model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

COORDS = ("x", "tau", "sigma", "r")
DERIVATIVES = ("v", "v_x", "v_tau", "v_sigma", "v_r", "v_xx")
N_FEATURES = 6
TAU_FLOOR = 1e-8
BASE_WIDTH = 1.0 / (math.sqrt(2.0 * math.pi) * math.log(2.0))
U_SCALE = 4.0
EXPORT_FORMAT = "reprolab.pinn/1"
LOSS_TERMS = ("price", "delta", "pde", "terminal", "boundary")
Precision = Literal["float64", "float32"]
PRECISIONS: tuple[str, ...] = ("float64", "float32")


def pde_residual(v: Any, v_x: Any, v_xx: Any, v_tau: Any, sigma: Any, r: Any) -> Any:
    """Black–Scholes residual in normalised coordinates (per year); numpy or tensors."""
    half_var = 0.5 * sigma * sigma
    return v_tau - half_var * v_xx - (r - half_var) * v_x + r * v


def normalisation(bounds: Mapping[str, tuple[float, float]]) -> dict[str, float]:
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


def flat_inputs(*values: Any) -> list[np.ndarray]:
    """Broadcast to one shape and flatten, as float64."""
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in values))
    return [a.ravel() for a in arrays]


def price_greeks(
    model: Any, S: Any, K: Any, tau: Any, sigma: Any, r: Any, kind: Literal["call", "put"] = "call"
) -> dict[str, np.ndarray]:
    """Price and Greeks of ``model`` (anything with ``derivatives(x, tau, sigma, r)``)."""
    S, K, tau, sigma, r = flat_inputs(S, K, tau, sigma, r)
    x = np.log(S / K)
    return greeks_from_derivatives(model.derivatives(x, tau, sigma, r), x, tau, r, K, kind)


def residual_at(model: Any, x: Any, tau: Any, sigma: Any, r: Any) -> np.ndarray:
    """The PDE residual R of ``model`` at the points (per year)."""
    x, tau, sigma, r = flat_inputs(x, tau, sigma, r)
    d = model.derivatives(x, tau, sigma, r)
    return pde_residual(d["v"], d["v_x"], d["v_xx"], d["v_tau"], sigma, r)


def coords_array(x: Any, tau: Any, sigma: Any, r: Any) -> np.ndarray:
    return np.stack(flat_inputs(x, tau, sigma, r), axis=1)


def frame_coords(df: pd.DataFrame) -> np.ndarray:
    """The (n, 4) float64 array of model coordinates (x, tau, sigma, r) of a frame."""
    return df[list(COORDS)].to_numpy(dtype=np.float64)
