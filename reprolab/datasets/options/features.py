"""Model coordinates for the options PINN, and the points where its PDE residual is enforced.

Black–Scholes prices are homogeneous of degree one in (S, K): V(cS, cK) = c V(S, K). So the
network learns V/K as a function of (x = ln(S/K), tau, sigma, r) only, and every label is
normalised by the power of K that makes it scale-free (price, vega, theta, rho divided by K,
gamma multiplied by K, delta unchanged). Extra coordinates the network may use:

* ``s = sigma * sqrt(tau)``      -- total volatility to expiry;
* ``fwd_x = x + r * tau``        -- log forward moneyness ln(F/K);
* ``fwd_scaled = fwd_x / s``     -- the forward moneyness in standard deviations.

Collocation points are drawn over the TRAINING domain: the declared box minus the held-out
band, so the PDE loss never sees the region the model is later tested on for extrapolation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from reprolab.core.config import HeldoutRegion, OptionsDomain, OptionsFeaturesParams
from reprolab.core.errors import ValidationError
from reprolab.core.seeding import rng
from reprolab.datasets.options.blackscholes import bs_price_greeks, payoff
from reprolab.datasets.options.generate import domain_bounds, heldout_band

MODEL_INPUTS = ["x", "tau", "sigma", "r", "s", "fwd_x", "fwd_scaled"]
_KINDS = ("call", "put")
# label name -> (source column, power of K the source is multiplied by)
_LABELS: dict[str, tuple[str, int]] = {}
for _name, _power, _suffix in (
    ("price", -1, "_k"),
    ("delta", 0, ""),
    ("gamma", 1, "_k"),
    ("vega", -1, "_k"),
    ("theta", -1, "_k"),
    ("rho", -1, "_k"),
):
    for _kind in _KINDS:
        _LABELS[f"{_kind}_{_name}{_suffix}"] = (f"{_kind}_{_name}", _power)
LABEL_COLUMNS = list(_LABELS)
COORDINATE_COLUMNS = ["contract_id", *MODEL_INPUTS, *LABEL_COLUMNS]
COLLOCATION_SETS = ("interior", "terminal", "boundary")
_MAX_REJECTION_ROUNDS = 1000


def _derived(x: np.ndarray, tau: np.ndarray, sigma: np.ndarray, r: np.ndarray) -> dict:
    """s, fwd_x and fwd_scaled; fwd_scaled is set to 0.0 where tau == 0 (s == 0) to stay finite."""
    s = sigma * np.sqrt(tau)
    fwd_x = x + r * tau
    fwd_scaled = np.divide(fwd_x, s, out=np.zeros_like(fwd_x), where=s > 0)
    return {"s": s, "fwd_x": fwd_x, "fwd_scaled": fwd_scaled}


def option_coordinates(df: pd.DataFrame) -> pd.DataFrame:
    """The scale-free coordinates and labels of :data:`COORDINATE_COLUMNS` for a priced frame.

    Any ``region`` column (train/val/test/held-out tag) is passed through unchanged at the end.
    """
    need = ["contract_id", "S", "K", "tau", "sigma", "r", *(src for src, _ in _LABELS.values())]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValidationError(f"option_coordinates: missing column(s) {', '.join(missing)}")
    S = df["S"].to_numpy(dtype=np.float64)
    K = df["K"].to_numpy(dtype=np.float64)
    for name, arr in (("S", S), ("K", K)):
        bad = ~(arr > 0)  # also catches NaN
        if bad.any():
            i = int(np.argmax(bad))
            raise ValidationError(f"option_coordinates: {name} must be > 0 (row {i}: {arr[i]})")
    tau = df["tau"].to_numpy(dtype=np.float64)
    sigma = df["sigma"].to_numpy(dtype=np.float64)
    r = df["r"].to_numpy(dtype=np.float64)
    x = np.log(S / K)
    cols: dict[str, np.ndarray] = {
        "contract_id": df["contract_id"].to_numpy(),
        "x": x,
        "tau": tau,
        "sigma": sigma,
        "r": r,
        **_derived(x, tau, sigma, r),
    }
    for name, (src, power) in _LABELS.items():
        cols[name] = df[src].to_numpy(dtype=np.float64) * K**power
    out = pd.DataFrame(cols, columns=COORDINATE_COLUMNS, index=df.index)
    if "region" in df.columns:
        out["region"] = df["region"]
    return out


def _band(domain: OptionsDomain, heldout: HeldoutRegion) -> tuple[str, float, float]:
    """The held-out band as (model coordinate, low, high), plus sanity checks against the box."""
    bounds = domain_bounds(domain)
    coord, low, high = heldout_band(heldout)
    lo, hi = bounds[coord]
    if low <= lo and high >= hi:
        raise ValidationError(
            f"collocation_points: held-out {heldout.column} band [{heldout.low}, {heldout.high}] "
            "covers the whole sampled range; no training domain is left"
        )
    return coord, low, high


def _in_band(cols: dict[str, np.ndarray], heldout: HeldoutRegion, band: tuple) -> np.ndarray:
    coord, low, high = band
    v = cols[coord]
    inside = (v >= low) & (v <= high)
    if heldout.column == "moneyness":  # also test S/K itself, so exp/log rounding cannot leak
        m = np.exp(v)
        inside |= (m >= heldout.low) & (m <= heldout.high)
    return inside


def _rejection_sample(
    gen: np.random.Generator,
    n: int,
    ranges: dict[str, tuple[float, float]],
    fixed: dict[str, float],
    heldout: HeldoutRegion,
    band: tuple,
    what: str,
) -> dict[str, np.ndarray]:
    """``n`` points uniform over ``ranges`` (``fixed`` coordinates held constant), none in band.

    Rejection: draw a batch, drop the in-band points, draw again until ``n`` are kept. The kept
    points are uniform over the training domain, and the result depends only on the generator.
    """
    coord = band[0]
    if coord in fixed:
        probe = {coord: np.array([fixed[coord]])}
        if _in_band(probe, heldout, band)[0]:
            raise ValidationError(
                f"collocation_points: {what} points sit at {coord} = {fixed[coord]:g}, "
                f"inside the held-out {heldout.column} band"
            )
    names = list(ranges)
    kept: list[dict[str, np.ndarray]] = []
    have = 0
    for _ in range(_MAX_REJECTION_ROUNDS):
        m = max(2 * (n - have), 64)  # over-draw so one or two rounds usually suffice
        u = gen.random((m, len(names)))
        cols = {}
        for j, name in enumerate(names):
            lo, hi = ranges[name]
            # tau is drawn from (lo, hi] (hi - u * width), so interior points never hit tau_min;
            # the other coordinates from [lo, hi).
            cols[name] = hi - (hi - lo) * u[:, j] if name == "tau" else lo + (hi - lo) * u[:, j]
        for name, value in fixed.items():
            cols[name] = np.full(m, float(value))
        keep = ~_in_band(cols, heldout, band)
        kept.append({k: v[keep] for k, v in cols.items()})
        have += int(keep.sum())
        if have >= n:
            return {k: np.concatenate([c[k] for c in kept])[:n] for k in cols}
    raise ValidationError(
        f"collocation_points: could not draw {n} {what} points outside the held-out band"
    )


def _frame(cols: dict[str, np.ndarray]) -> pd.DataFrame:
    x, tau, sigma, r = cols["x"], cols["tau"], cols["sigma"], cols["r"]
    base = {"x": x, "tau": tau, "sigma": sigma, "r": r, **_derived(x, tau, sigma, r)}
    return pd.DataFrame(base, columns=MODEL_INPUTS)


def collocation_points(
    params: OptionsFeaturesParams,
    domain: OptionsDomain,
    heldout: HeldoutRegion,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Seeded PDE collocation points over the training domain (declared box minus held-out band).

    * ``interior``: ``n_interior`` points, tau in (tau_min, tau_max]; no target (PDE residual).
    * ``terminal``: ``n_terminal`` points at tau = 0 with target ``call_price_k`` = the call
      payoff max(e^x - 1, 0) (K = 1). Here s = 0, so ``fwd_scaled`` is defined as 0.0 rather
      than NaN (x / 0); the network should not rely on it at expiry.
    * ``boundary``: ``n_boundary`` points, half at the lowest and half at the highest training
      x (the box edges; an edge covered by a held-out moneyness band is moved to just below the
      band, 1e-9 in x), tau/sigma/r sampled, with target ``call_price_k`` = the closed-form call
      price for K = 1 (the Dirichlet condition there).

    Every set is drawn by rejection (see :func:`_rejection_sample`) from its own stream
    ``rng(seed, "options", "collocation", name)``, so no point lies in the held-out band.
    Columns: x, tau, sigma, r, s, fwd_x, fwd_scaled (+ call_price_k where stated).
    """
    band = _band(domain, heldout)
    bounds = domain_bounds(domain)
    out: dict[str, pd.DataFrame] = {}

    def gen(name: str) -> np.random.Generator:
        return rng(seed, "options", "collocation", name)

    interior = _rejection_sample(
        gen("interior"), params.n_interior, bounds, {}, heldout, band, "interior"
    )
    out["interior"] = _frame(interior)

    no_tau = {k: v for k, v in bounds.items() if k != "tau"}
    terminal = _rejection_sample(
        gen("terminal"), params.n_terminal, no_tau, {"tau": 0.0}, heldout, band, "terminal"
    )
    frame = _frame(terminal)
    frame["call_price_k"] = payoff(np.exp(terminal["x"]), 1.0, "call")
    out["terminal"] = frame

    x_lo, x_hi = bounds["x"]
    if band[0] == "x" and _in_band({"x": np.array([x_hi])}, heldout, band)[0]:
        x_hi = band[1] - 1e-9  # the band reaches the top of the box: use its lower edge instead
    no_x = {k: v for k, v in bounds.items() if k != "x"}
    g = gen("boundary")
    n_low = params.n_boundary // 2
    parts = [
        _rejection_sample(g, n, no_x, {"x": x_edge}, heldout, band, "boundary")
        for n, x_edge in ((n_low, x_lo), (params.n_boundary - n_low, x_hi))
        if n > 0
    ]
    boundary = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    frame = _frame(boundary)
    price = bs_price_greeks(
        np.exp(boundary["x"]), 1.0, boundary["tau"], boundary["sigma"], boundary["r"], "call"
    )["price"]
    frame["call_price_k"] = price
    out["boundary"] = frame
    return out


def training_domain_sampler(
    domain: OptionsDomain, heldout: HeldoutRegion
) -> Callable[[np.random.Generator, int], np.ndarray]:
    """``sample(gen, n)`` -> (n, 4) fresh points (x, tau, sigma, r), uniform over the training
    domain (the declared box minus the held-out band), for the PINN's adaptive refinement."""
    band = _band(domain, heldout)
    bounds = domain_bounds(domain)

    def sample(gen: np.random.Generator, n: int) -> np.ndarray:
        cols = _rejection_sample(gen, n, bounds, {}, heldout, band, "refinement")
        return np.stack([cols[c] for c in ("x", "tau", "sigma", "r")], axis=1)

    return sample
