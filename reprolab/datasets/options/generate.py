"""Synthetic European options: contracts sampled over the declared domain, priced in closed form.

Every contract is drawn in the model coordinates (log-moneyness x = ln(S/K), tau in years,
sigma, r), uniformly over the box in ``params.domain``; S = K exp(x) with K = ``params.strike``.
Labels (price and Greeks of the call and the put) come from
:func:`reprolab.datasets.options.blackscholes.bs_price_greeks`, so the data set is exact up to
float64 rounding.

The data are produced in chunks of at most ``params.chunk_rows`` rows so memory stays bounded,
and the sample does not depend on the chunk size: both samplers draw one stream chunk after
chunk (a single scrambled Sobol' engine, or a single numpy Generator), so concatenating the
chunks gives the same rows whatever ``chunk_rows`` is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from scipy.stats import qmc

from reprolab.core.config import (
    HeldoutRegion,
    OptionsDomain,
    OptionsGenerateParams,
    OptionsSplitParams,
)
from reprolab.core.errors import ValidationError
from reprolab.core.seeding import int_seed, rng
from reprolab.datasets.options.blackscholes import GREEKS, KINDS, bs_price_greeks

INPUT_COLUMNS = ["contract_id", "S", "K", "tau", "sigma", "r", "moneyness"]
LABEL_COLUMNS = [f"{kind}_{greek}" for kind in KINDS for greek in GREEKS]
OPTION_COLUMNS = INPUT_COLUMNS + LABEL_COLUMNS
# The generator's contract (arrow types), checked on what generate@options writes.
OPTION_SCHEMA = [["contract_id", "int64"], *([c, "double"] for c in OPTION_COLUMNS[1:])]

DAYS_PER_YEAR = 365.0  # tau_*_days / 365 = years, the Actual/365 Fixed convention


def domain_bounds(domain: OptionsDomain) -> dict[str, tuple[float, float]]:
    """The sampling box in model coordinates: x = ln(S/K), tau in years, sigma, r."""
    return {
        "x": (float(np.log(domain.moneyness_min)), float(np.log(domain.moneyness_max))),
        "tau": (domain.tau_min_days / DAYS_PER_YEAR, domain.tau_max_days / DAYS_PER_YEAR),
        "sigma": (domain.sigma_min, domain.sigma_max),
        "r": (domain.r_min, domain.r_max),
    }


# A held-out band is declared on a contract column; models see it in their own coordinates
# (x = ln S/K for moneyness). The one home of that mapping.
HELDOUT_COORDINATE = {"moneyness": "x", "tau": "tau", "sigma": "sigma", "r": "r"}


def heldout_band(heldout: HeldoutRegion) -> tuple[str, float, float]:
    """The held-out band as (model coordinate, low, high)."""
    if heldout.column not in HELDOUT_COORDINATE:
        raise ValidationError(
            f"heldout.column must be one of {', '.join(HELDOUT_COORDINATE)} "
            f"(got {heldout.column!r})"
        )
    if heldout.column == "moneyness":
        if heldout.low <= 0:
            raise ValidationError(f"heldout.low must be > 0 for moneyness (got {heldout.low})")
        return "x", float(np.log(heldout.low)), float(np.log(heldout.high))
    return HELDOUT_COORDINATE[heldout.column], heldout.low, heldout.high


def _unit_sampler(params: OptionsGenerateParams, seed: int) -> Callable[[int], np.ndarray]:
    """A function drawing the next ``m`` points of ONE stream in [0, 1)^4 (chunk-independent)."""
    if params.sampler == "sobol":
        engine = qmc.Sobol(d=4, scramble=True, seed=int_seed(seed, "options", "generate"))

        def draw(m: int) -> np.ndarray:
            with warnings.catch_warnings():
                # Chunks are rarely a power of two; the points are still the next ones of the
                # same sequence, we only lose scipy's balance guarantee per chunk.
                warnings.filterwarnings("ignore", message=".*balance properties.*")
                return engine.random(m)

        return draw
    if params.sampler == "uniform":
        gen = rng(seed, "options", "generate")
        # Generator.random fills row-major, one draw per value: chunked draws concatenate
        # to exactly the single big draw.
        return lambda m: gen.random((m, 4))
    raise ValidationError(
        f"generate_options: sampler must be 'sobol' or 'uniform' (got {params.sampler!r})"
    )


def _price_chunk(
    units: np.ndarray, first_id: int, strike: float, domain: OptionsDomain
) -> pd.DataFrame:
    bounds = domain_bounds(domain)
    coords = {
        name: lo + (hi - lo) * units[:, j] for j, (name, (lo, hi)) in enumerate(bounds.items())
    }
    n = units.shape[0]
    K = np.full(n, float(strike))
    S = K * np.exp(coords["x"])
    cols: dict[str, np.ndarray] = {
        "contract_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "S": S,
        "K": K,
        "tau": coords["tau"],
        "sigma": coords["sigma"],
        "r": coords["r"],
        "moneyness": S / K,
    }
    for kind in KINDS:
        out = bs_price_greeks(S, K, coords["tau"], coords["sigma"], coords["r"], kind)
        for greek in GREEKS:
            cols[f"{kind}_{greek}"] = out[greek]
    frame = pd.DataFrame(cols, columns=OPTION_COLUMNS)
    return frame.astype({c: np.float64 for c in OPTION_COLUMNS if c != "contract_id"})


def generate_options(params: OptionsGenerateParams, seed: int) -> Iterator[pd.DataFrame]:
    """Yield the options data set in chunks of at most ``params.chunk_rows`` rows.

    Exactly ``params.n_contracts`` rows in total (never sampled down), with ``contract_id``
    0..n-1 in order and the columns of :data:`OPTION_COLUMNS`. Deterministic for ``seed``.
    """
    if params.n_contracts < 1 or params.chunk_rows < 1:
        raise ValidationError(
            "generate_options: n_contracts and chunk_rows must be >= 1 "
            f"(got {params.n_contracts}, {params.chunk_rows})"
        )
    draw = _unit_sampler(params, seed)
    done = 0
    while done < params.n_contracts:
        m = min(params.chunk_rows, params.n_contracts - done)
        yield _price_chunk(draw(m), done, params.strike, params.domain)
        done += m


# Maturities of the evaluation grid, in days: short ones are where gamma is hardest.
GRID_TAU_DAYS = (1, 2, 5, 7, 14, 30, 61, 91, 182, 273, 365, 547, 730)


def evaluation_grid(
    domain: OptionsDomain, split: OptionsSplitParams, n_x: int = 41, n_sigma: int = 9, n_r: int = 3
) -> pd.DataFrame:
    """A regular grid over the declared domain with exact prices and Greeks (judge-only truth).

    Maturities outside the domain are dropped; ``region`` is "heldout" inside the held-out
    band and "domain" elsewhere, so accuracy can be reported for both, by maturity.
    """
    b = domain_bounds(domain)
    taus = [d / DAYS_PER_YEAR for d in GRID_TAU_DAYS if b["tau"][0] <= d / DAYS_PER_YEAR]
    taus = [t for t in taus if t <= b["tau"][1]] or [b["tau"][0]]
    x, tau, sigma, r = np.meshgrid(
        np.linspace(*b["x"], n_x),
        np.asarray(taus),
        np.linspace(*b["sigma"], n_sigma),
        np.linspace(*b["r"], n_r),
        indexing="ij",
    )
    x, tau, sigma, r = (a.ravel() for a in (x, tau, sigma, r))
    S = np.exp(x)
    cols: dict[str, np.ndarray] = {"x": x, "tau": tau, "sigma": sigma, "r": r, "S": S}
    for kind in KINDS:
        out = bs_price_greeks(S, 1.0, tau, sigma, r, kind)
        for greek in GREEKS:
            cols[f"{kind}_{greek}"] = out[greek]
    h = split.heldout
    value = {"moneyness": S, "tau": tau, "sigma": sigma, "r": r}[h.column]
    frame = pd.DataFrame(cols)
    frame["region"] = np.where((value >= h.low) & (value <= h.high), "heldout", "domain")
    return frame
