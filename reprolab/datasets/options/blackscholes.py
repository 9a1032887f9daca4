"""Closed-form Black–Scholes prices and Greeks for European options (no dividends).

This is the label generator and the reference the PINN is judged against, so it is float64,
vectorised (inputs broadcast like numpy arrays) and validated: a NaN or a non-positive
spot/strike/vol/maturity raises :class:`ValidationError` instead of silently producing NaN.

Units (V is the option value in the currency of S and K):

* ``tau``   -- time to expiry in years; ``sigma`` -- annualised vol (0.2 = 20 %);
  ``r``     -- continuously compounded annual rate (0.05 = 5 %).
* ``price`` -- V.
* ``delta`` -- dV/dS.
* ``gamma`` -- d2V/dS2.
* ``vega``  -- dV/dsigma per 1.00 of vol (divide by 100 for "per vol point").
* ``theta`` -- dV/dt per YEAR of calendar time, i.e. -dV/dtau (divide by 365 for per day).
* ``rho``   -- dV/dr per 1.00 of rate (divide by 100 for "per 1 %").

Calls and puts each use their own formula (the put is not derived from the call by
parity), and N(-d) is evaluated as ``ndtr(-d)`` rather than ``1 - ndtr(d)``, so deep
out-of-the-money values keep their relative accuracy instead of cancelling to zero.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

from reprolab.core.errors import ValidationError

GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")
KINDS = ("call", "put")
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def _check_kind(where: str, kind: str) -> None:
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValidationError(f"{where}: kind must be 'call' or 'put' (got {kind!r})")


def _as_float(where: str, name: str, value: object) -> np.ndarray:
    """``value`` as a float64 array; finite, or a ValidationError naming the first bad row."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"{where}: {name} must be numeric (got {value!r:.60})") from None
    bad = ~np.isfinite(arr.ravel())
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(f"{where}: {name} must be finite (row {i}: {arr.ravel()[i]})")
    return arr


def _check_bound(where: str, name: str, arr: np.ndarray, *, strict: bool) -> None:
    flat = arr.ravel()
    bad = flat <= 0.0 if strict else flat < 0.0
    if bad.any():
        i = int(np.argmax(bad))
        op = ">" if strict else ">="
        raise ValidationError(f"{where}: {name} must be {op} 0 (row {i}: {flat[i]})")


def bs_price_greeks(
    S: ArrayLike,
    K: ArrayLike,
    tau: ArrayLike,
    sigma: ArrayLike,
    r: ArrayLike,
    kind: Literal["call", "put"] = "call",
) -> dict[str, np.ndarray]:
    """Price and Greeks (see the module docstring for units) of a European call or put.

    Inputs broadcast against each other; every output has the broadcast shape. Bad values
    (NaN/inf anywhere; S, K, tau or sigma <= 0) raise ValidationError naming the field and the
    first offending flat index of that input, so a bad row in a data set is easy to find.
    """
    where = "bs_price_greeks"
    _check_kind(where, kind)
    arrays = {
        name: _as_float(where, name, value)
        for name, value in (("S", S), ("K", K), ("tau", tau), ("sigma", sigma), ("r", r))
    }
    for name in ("S", "K", "tau", "sigma"):
        _check_bound(where, name, arrays[name], strict=True)
    try:
        S_, K_, tau_, sigma_, r_ = np.broadcast_arrays(*arrays.values())
    except ValueError:
        shapes = ", ".join(f"{n}{a.shape}" for n, a in arrays.items())
        raise ValidationError(f"{where}: inputs do not broadcast together: {shapes}") from None

    sqrt_tau = np.sqrt(tau_)
    s = sigma_ * sqrt_tau  # total vol to expiry
    d1 = (np.log(S_ / K_) + (r_ + 0.5 * sigma_ * sigma_) * tau_) / s
    d2 = d1 - s
    disc_k = K_ * np.exp(-r_ * tau_)  # discounted strike
    pdf_d1 = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
    s_pdf = S_ * pdf_d1  # S phi(d1), equal to K e^{-r tau} phi(d2)
    gamma = pdf_d1 / (S_ * s)
    vega = s_pdf * sqrt_tau
    decay = -s_pdf * sigma_ / (2.0 * sqrt_tau)  # the vol part of theta, same for both kinds
    if kind == "call":
        n_d1, n_d2 = ndtr(d1), ndtr(d2)
        price = S_ * n_d1 - disc_k * n_d2
        delta = n_d1
        theta = decay - r_ * disc_k * n_d2
        rho = tau_ * disc_k * n_d2
    else:
        n_md1, n_md2 = ndtr(-d1), ndtr(-d2)
        price = disc_k * n_md2 - S_ * n_md1
        delta = -n_md1
        theta = decay + r_ * disc_k * n_md2
        rho = -tau_ * disc_k * n_md2
    out = {
        "price": price,
        "delta": delta,
        "gamma": gamma,
        "vega": vega,
        "theta": theta,
        "rho": rho,
    }
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def payoff(S: ArrayLike, K: ArrayLike, kind: Literal["call", "put"]) -> np.ndarray:
    """Intrinsic value at expiry (tau = 0): the terminal condition the PDE is collocated on."""
    where = "payoff"
    _check_kind(where, kind)
    S_ = _as_float(where, "S", S)
    K_ = _as_float(where, "K", K)
    _check_bound(where, "S", S_, strict=False)
    _check_bound(where, "K", K_, strict=True)
    diff = S_ - K_ if kind == "call" else K_ - S_
    return np.asarray(np.maximum(diff, 0.0), dtype=np.float64)
