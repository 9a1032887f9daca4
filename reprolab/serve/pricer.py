"""Serving option prices and Greeks from the trained PINN, in microseconds.

``Pricer.load(path)`` loads the exported weights once per process (cached by path); the
numpy path needs no TensorFlow import. The network prices calls as v = C/K of
(x = ln(S/K), tau, sigma, r); puts come from put-call parity with the same network, so
parity holds to float rounding: it checks the implementation, not the learning.

Inputs outside the trained domain are never silently extrapolated: they are priced by the
closed form (``reprolab.datasets.options.blackscholes``) with a warning, and flagged
``in_domain = False``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reprolab.core import paths
from reprolab.datasets.options.blackscholes import GREEKS, KINDS, bs_price_greeks
from reprolab.models.pinn.maths import Precision, greeks_from_derivatives, price_greeks
from reprolab.models.pinn.numpy_model import NumpyPinn, ScalarMath

FIELDS = ("S", "K", "tau", "sigma", "r")
DEFAULT_MODEL = paths.model_dir("pinn") / "weights.npz"
# Process-wide: one Pricer per exported file and precision, loaded once.
_LOADED: dict[tuple[str, str], Pricer] = {}
_SCALARS = (float, int)


class OutOfDomainWarning(UserWarning):
    """Some inputs lie outside the trained domain and were priced by the closed form."""


def _validate(values: dict[str, np.ndarray], kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'call' or 'put' (got {kind!r})")
    rules = {
        "S": ("must be > 0", lambda a: a > 0),
        "K": ("must be > 0", lambda a: a > 0),
        "tau": ("must be > 0 (years)", lambda a: a > 0),
        "sigma": ("must be > 0", lambda a: a > 0),
        "r": ("must be finite", lambda a: np.ones_like(a, dtype=bool)),
    }
    problems = []
    for name in FIELDS:
        a = values[name]
        finite = np.isfinite(a)
        if not finite.all():
            problems.append(
                f"{name} is NaN or infinite at rows {np.flatnonzero(~finite)[:5].tolist()}"
            )
            continue
        text, ok = rules[name]
        bad = ~ok(a)
        if bad.any():
            rows = np.flatnonzero(bad)[:5].tolist()
            problems.append(f"{name} {text}: rows {rows} (first value {a[rows[0]]!r})")
    if problems:
        raise ValueError("invalid option input: " + "; ".join(problems))


def _scalar_ok(S: float, K: float, tau: float, sigma: float, r: float) -> bool:
    """The fast check of one contract; a failure goes to :func:`_validate` for the message."""
    return (
        S > 0.0
        and K > 0.0
        and tau > 0.0
        and sigma > 0.0
        and math.isfinite(r)
        and (math.isfinite(S) and math.isfinite(K) and math.isfinite(tau) and math.isfinite(sigma))
    )


class Pricer:
    """Prices and Greeks from the exported PINN, with a closed-form fallback out of domain.

    One contract (Python scalars) takes the single-row path: the formulas on floats and one
    (6, 1, width) slab per layer, tens of microseconds; repeated queries come from an LRU
    cache. Arrays take the batch path: forward-mode derivatives in chunks, or values alone
    with ``greeks=False``.
    """

    def __init__(
        self, model: NumpyPinn, domain: Mapping[str, Sequence[float]], cache_size: int = 4096
    ) -> None:
        self.model = model
        self.domain = {k: (float(v[0]), float(v[1])) for k, v in domain.items()}
        self._box = tuple(self.domain[k] for k in ("x", "tau", "sigma", "r"))
        self._scalar = functools.lru_cache(maxsize=cache_size)(self._scalar_uncached)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MODEL, precision: Precision = "float32") -> Pricer:
        """Load once per process (cached by path and precision).

        ``domain.json`` beside the weights declares the trained box. ``precision`` is the
        arithmetic of the network's layers (see :meth:`NumpyPinn.load`): float32 serves
        batches several times faster and differs from float64 by about 1e-7 K.
        """
        key = (str(Path(path).resolve()), precision)
        if key not in _LOADED:
            p = Path(path)
            if not p.exists():
                raise FileNotFoundError(f"{p}: no exported PINN (run `dvc repro train@pinn`)")
            domain = json.loads(p.with_name("domain.json").read_text())
            _LOADED[key] = cls(NumpyPinn.load(p, precision), domain)
        return _LOADED[key]

    def in_domain(self, x: np.ndarray, tau: np.ndarray, sigma: np.ndarray, r: np.ndarray):
        """True where every coordinate lies inside the trained box (x = ln(S/K))."""
        ok = np.ones(np.shape(x), dtype=bool)
        for (lo, hi), a in zip(self._box, (x, tau, sigma, r), strict=True):
            ok &= (a >= lo) & (a <= hi)
        return ok

    def _scalar_uncached(
        self, S: float, K: float, tau: float, sigma: float, r: float, kind: str, greeks: bool
    ) -> dict[str, Any] | None:
        """One valid contract on the single-row path (the LRU cache wraps this); None outside
        the trained domain."""
        x = math.log(S / K)
        (x0, x1), (t0, t1), (s0, s1), (r0, r1) = self._box  # in_domain, unrolled for floats
        if not (x0 <= x <= x1 and t0 <= tau <= t1 and s0 <= sigma <= s1 and r0 <= r <= r1):
            return None
        d = self.model.scalar_derivatives(x, tau, sigma, r)
        out = greeks_from_derivatives(d, x, tau, r, K, kind, ScalarMath)
        if not greeks:
            out = {"price": out["price"]}
        out["in_domain"] = True
        return out

    def _price_arrays(self, values: dict[str, np.ndarray], kind: str, greeks: bool) -> dict:
        _validate(values, kind)
        S, K, tau, sigma, r = (values[k] for k in FIELDS)
        x = np.log(S / K)
        inside = self.in_domain(x, tau, sigma, r)
        names = GREEKS if greeks else ("price",)
        out = {g: np.empty(S.shape) for g in names}
        if inside.any():
            i = slice(None) if inside.all() else inside  # a view, not a copy, when all inside
            if greeks:
                net = price_greeks(self.model, S[i], K[i], tau[i], sigma[i], r[i], kind)
            else:
                net = {"price": self._prices(x[i], K[i], tau[i], sigma[i], r[i], kind)}
            for g in names:
                out[g][i] = net[g]
        if not inside.all():
            rows = np.flatnonzero(~inside)
            warnings.warn(
                f"{rows.size} input(s) outside the trained domain (rows {rows[:5].tolist()}): "
                "priced by the closed form",
                OutOfDomainWarning,
                stacklevel=3,
            )
            o = ~inside
            cf = bs_price_greeks(S[o], K[o], tau[o], sigma[o], r[o], kind)
            for g in names:
                out[g][o] = cf[g]
        out["in_domain"] = inside
        return out

    def _prices(self, x, K, tau, sigma, r, kind: str) -> np.ndarray:
        """Prices alone (no derivatives): the network's call, puts by parity."""
        v = self.model.price_k(x, tau, sigma, r)
        if kind == "put":
            v = v - np.exp(x) + np.exp(-r * tau)
        return K * v

    def price(
        self, S: Any, K: Any, tau: Any, sigma: Any, r: Any, kind: str = "call", greeks: bool = True
    ) -> dict[str, Any]:
        """Price (and Greeks) of calls or puts; scalars give floats, arrays give arrays.

        Units as in :mod:`reprolab.datasets.options.blackscholes`: vega per 1.00 of vol, theta
        per year.
        Raises ValueError naming the rows and fields of bad input; inputs outside the trained
        domain are priced by the closed form with an :class:`OutOfDomainWarning`.
        """
        if (
            isinstance(S, _SCALARS)
            and isinstance(K, _SCALARS)
            and isinstance(tau, _SCALARS)
            and isinstance(sigma, _SCALARS)
            and isinstance(r, _SCALARS)
            and kind in KINDS
        ):
            S, K, tau, sigma, r = float(S), float(K), float(tau), float(sigma), float(r)
            if _scalar_ok(S, K, tau, sigma, r):
                out = self._scalar(S, K, tau, sigma, r, kind, greeks)
                if out is not None:
                    return out.copy()  # a copy: a caller's edits never reach the cache
            # invalid or outside the domain: the array path raises or warns
            out = self.price(*(np.array([v]) for v in (S, K, tau, sigma, r)), kind, greeks)
            return {k: v.item() for k, v in out.items()}
        arrays = np.broadcast_arrays(
            *(np.asarray(v, dtype=np.float64) for v in (S, K, tau, sigma, r))
        )
        shape = arrays[0].shape
        out = self._price_arrays(
            dict(zip(FIELDS, (a.ravel() for a in arrays), strict=True)), kind, greeks
        )
        return {k: v.reshape(shape) for k, v in out.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reprolab.serve.pricer", description="Price an option with the PINN."
    )
    for name in FIELDS:
        parser.add_argument(f"--{name}", type=float, required=True)
    parser.add_argument("--kind", choices=("call", "put"), default="call")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    args = parser.parse_args(argv)
    try:
        pricer = Pricer.load(args.model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", OutOfDomainWarning)
            result = pricer.price(args.S, args.K, args.tau, args.sigma, args.r, kind=args.kind)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: pricing: {exc}", file=sys.stderr)
        return 2
    result["kind"] = args.kind
    result["source"] = "pinn" if result["in_domain"] else "closed_form"
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
