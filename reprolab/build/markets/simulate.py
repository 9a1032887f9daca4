"""Synthetic daily markets from a regime-switching process with a computable best forecast.

The process, per symbol (K regimes; entry k of each ``markets.generate.regimes`` list):

* a hidden Markov regime ``s_t`` with persistent transitions: ``P[k, k] = stay[k]``, the rest
  of the row spread evenly; ``s_0`` is drawn from the chain's stationary distribution;
* close-to-close log-returns follow a regime-dependent AR(1):
  ``r_t = mu[s_t] + phi[s_t] * r_{t-1} + sigma[s_t] * eps_t`` (``r_0 = 0``), so one regime
  has momentum (phi > 0), one reversal (phi < 0), one is calm (small sigma);
* the overnight gap ``g_t = ln(open_t / close_{t-1}) ~ N(0, (gap_scale * sigma)^2)``;
* wicks above ``max(open, close)`` and below ``min(open, close)`` are half-normal with scale
  ``wick_scale * sigma``, so high >= max(open, close) and low <= min(open, close);
* ``ln volume_t ~ N(ln volume_base + volume_vol_elasticity * ln(sigma / mean(sigma)),
  volume_noise^2)``: volume rises with the regime's volatility (rounded to an integer >= 1).

Every observable's density given the regime is known, so the HMM forward filter with the
true parameters gives ``P(s_t | observables up to t)`` and from it the probability that the
next return is up. That **filter oracle** is the best forecast any model can make from the
observables; it is written to ``data/truth/markets`` for judging only.

Each symbol draws from its own named streams (``seeding.rng(seed, "markets", symbol, var)``),
so adding symbols (or days) never changes the data of existing ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr

from reprolab.core.config import MarketsGenerateParams
from reprolab.core.seeding import rng

# The generator's contract, column by column (arrow types): generate@markets checks what it
# writes against these, and the manifest then holds every reader to them.
OBSERVABLE_SCHEMA = [
    ["symbol", "large_string"],
    ["date", "timestamp[us]"],
    *([price, "double"] for price in ("open", "high", "low", "close")),
    ["volume", "int64"],
]
TRUTH_SCHEMA = [
    ["symbol", "large_string"],
    ["date", "timestamp[us]"],
    ["regime", "int8"],
    ["oracle_p_up", "double"],
]
OBSERVABLE_COLUMNS = [c for c, _ in OBSERVABLE_SCHEMA]
TRUTH_COLUMNS = [c for c, _ in TRUTH_SCHEMA]
_LOG_2PI = float(np.log(2.0 * np.pi))
# Bytes held per symbol-day while a chunk is generated (about 24 float64 arrays).
BYTES_PER_SYMBOL_DAY = 24 * 8


def symbol_name(i: int) -> str:
    return f"SYM{i:04d}"


@dataclass(frozen=True)
class Process:
    """The generator's parameters as arrays (what the oracle is allowed to know)."""

    mu: np.ndarray
    phi: np.ndarray
    sigma: np.ndarray
    transition: np.ndarray
    stationary: np.ndarray
    gap_scale: float
    wick_scale: float
    log_volume_mean: np.ndarray
    volume_noise: float

    @classmethod
    def from_params(cls, p: MarketsGenerateParams) -> Process:
        reg = p.regimes
        k = len(reg.names)
        stay = np.asarray(reg.stay, dtype=np.float64)
        transition = np.tile(((1.0 - stay) / (k - 1))[:, None], (1, k))
        np.fill_diagonal(transition, stay)
        # Stationary distribution: left eigenvector of the transition matrix for eigenvalue 1.
        vals, vecs = np.linalg.eig(transition.T)
        stationary = np.real(vecs[:, np.argmin(np.abs(vals - 1.0))])
        stationary = stationary / stationary.sum()
        sigma = np.asarray(reg.sigma, dtype=np.float64)
        log_volume_mean = np.log(p.volume_base) + p.volume_vol_elasticity * np.log(
            sigma / sigma.mean()
        )
        return cls(
            mu=np.asarray(reg.mu, dtype=np.float64),
            phi=np.asarray(reg.phi, dtype=np.float64),
            sigma=sigma,
            transition=transition,
            stationary=stationary,
            gap_scale=p.gap_scale,
            wick_scale=p.wick_scale,
            log_volume_mean=log_volume_mean,
            volume_noise=p.volume_noise,
        )


def simulate_symbols(
    symbols: list[str], n_days: int, process: Process, seed: int, initial_price: float
) -> dict[str, np.ndarray]:
    """Simulate the hidden regimes and OHLCV of ``symbols``; arrays are (n_symbols, n_days).

    Random numbers are drawn per symbol from that symbol's own streams, then the recursion
    runs over days vectorised across symbols.
    """
    n = len(symbols)
    k = len(process.mu)

    def draws(var: str, fn: str) -> np.ndarray:
        return np.stack([getattr(rng(seed, "markets", s, var), fn)(n_days) for s in symbols])

    u_regime = draws("regime", "random")
    eps = draws("return", "standard_normal")
    z_gap = draws("gap", "standard_normal")
    z_up = np.abs(draws("wick_up", "standard_normal"))
    z_down = np.abs(draws("wick_down", "standard_normal"))
    z_vol = draws("volume", "standard_normal")
    z_start = np.array([rng(seed, "markets", s, "start").standard_normal() for s in symbols])

    cum_trans = np.cumsum(process.transition, axis=1)
    cum_trans[:, -1] = 1.0
    cum_stat = np.cumsum(process.stationary)
    cum_stat[-1] = 1.0
    regime = np.empty((n, n_days), dtype=np.int64)
    ret = np.zeros((n, n_days))
    regime[:, 0] = np.minimum(np.searchsorted(cum_stat, u_regime[:, 0], side="right"), k - 1)
    for t in range(1, n_days):
        rows = cum_trans[regime[:, t - 1]]
        regime[:, t] = (u_regime[:, t, None] >= rows).sum(axis=1).clip(max=k - 1)
        s = regime[:, t]
        ret[:, t] = process.mu[s] + process.phi[s] * ret[:, t - 1] + process.sigma[s] * eps[:, t]

    sig = process.sigma[regime]
    close = initial_price * np.exp(0.25 * z_start)[:, None] * np.exp(np.cumsum(ret, axis=1))
    prev_close = np.concatenate([close[:, :1], close[:, :-1]], axis=1)  # c_{-1} := c_0
    open_ = prev_close * np.exp(process.gap_scale * sig * z_gap)
    high = np.maximum(open_, close) * np.exp(process.wick_scale * sig * z_up)
    low = np.minimum(open_, close) * np.exp(-process.wick_scale * sig * z_down)
    log_vol = process.log_volume_mean[regime] + process.volume_noise * z_vol
    volume = np.maximum(np.rint(np.exp(log_vol)), 1.0).astype(np.int64)
    return {
        "regime": regime,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
    }


def _returns(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(previous close, log-return) per row, with c_{-1} := c_0 so that r_0 = 0."""
    prev_close = np.concatenate([close[:, :1], close[:, :-1]], axis=1)
    return prev_close, np.log(close / prev_close)


def _normal_logpdf(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    z = (x - mean) / sd
    return -0.5 * (z * z + _LOG_2PI) - np.log(sd)


def emission_loglik(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    process: Process,
) -> np.ndarray:
    """log p(observables at t | regime k, past) for every row: shape (n, T, K).

    Uses only the observables and the generator's parameters; row t depends on rows t-2..t.
    """
    prev_close, ret = _returns(close)
    prev_ret = np.concatenate([np.zeros_like(ret[:, :1]), ret[:, :-1]], axis=1)
    gap = np.log(open_ / prev_close)
    wick_up = np.log(high / np.maximum(open_, close))
    wick_down = np.log(np.minimum(open_, close) / low)
    log_vol = np.log(volume.astype(np.float64))

    sig = process.sigma[None, None, :]
    ll = _normal_logpdf(
        ret[..., None], process.mu + process.phi * prev_ret[..., None], sig * np.ones_like(sig)
    )
    ll[:, 0, :] = 0.0  # no return is observed on the first day
    if process.gap_scale > 0:
        ll += _normal_logpdf(gap[..., None], 0.0, process.gap_scale * sig)
    wick_sd = process.wick_scale * sig
    ll += np.log(2.0) + _normal_logpdf(wick_up[..., None], 0.0, wick_sd)
    ll += np.log(2.0) + _normal_logpdf(wick_down[..., None], 0.0, wick_sd)
    ll += _normal_logpdf(log_vol[..., None], process.log_volume_mean, process.volume_noise)
    return ll


def filter_oracle(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    process: Process,
) -> tuple[np.ndarray, np.ndarray]:
    """HMM forward filter: (P(s_t | obs up to t) of shape (n, T, K), P(r_{t+1} > 0 | obs up to t)).

    The second array is the filter oracle: the Bayes-optimal probability that the next
    return is up, given everything observable at t and the true generator parameters.
    """
    ll = emission_loglik(open_, high, low, close, volume, process)
    # Likelihoods scaled by their per-row maximum: exact after normalisation, never underflow.
    lik = np.exp(ll - ll.max(axis=-1, keepdims=True))
    alpha = np.empty_like(ll)
    prior = np.broadcast_to(process.stationary, ll[:, 0].shape)
    for t in range(ll.shape[1]):
        if t > 0:
            prior = alpha[:, t - 1] @ process.transition
        joint = prior * lik[:, t]
        alpha[:, t] = joint / joint.sum(axis=-1, keepdims=True)
    predicted = alpha @ process.transition  # P(s_{t+1} = j | obs up to t)
    _, ret = _returns(close)
    p_up_given_regime = ndtr((process.mu + process.phi * ret[..., None]) / process.sigma)
    return alpha, np.clip((predicted * p_up_given_regime).sum(axis=-1), 0.0, 1.0)


def generate_markets(
    params: MarketsGenerateParams, seed: int
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Yield (observables, truth) frames, ``symbols_per_part`` symbols at a time, in order."""
    process = Process.from_params(params)
    dates = pd.bdate_range(params.start_date, periods=params.n_days)
    names = [symbol_name(i) for i in range(params.n_symbols)]
    for start in range(0, len(names), params.symbols_per_part):
        chunk = names[start : start + params.symbols_per_part]
        sim = simulate_symbols(chunk, params.n_days, process, seed, params.initial_price)
        _, p_up = filter_oracle(
            sim["open"], sim["high"], sim["low"], sim["close"], sim["volume"], process
        )
        symbol_col = np.repeat(np.asarray(chunk, dtype=object), params.n_days)
        date_col = np.tile(dates.values, len(chunk))
        observed = pd.DataFrame(
            {
                "symbol": symbol_col,
                "date": date_col,
                **{c: sim[c].ravel() for c in ("open", "high", "low", "close", "volume")},
            }
        )
        truth = pd.DataFrame(
            {
                "symbol": symbol_col,
                "date": date_col,
                "regime": sim["regime"].ravel().astype(np.int8),
                "oracle_p_up": p_up.ravel(),
            }
        )
        yield observed, truth


def oracle_log_loss(p_up: np.ndarray, up: np.ndarray) -> float:
    """Mean log loss of the oracle's probabilities against realised directions."""
    p = np.clip(p_up, 1e-15, 1 - 1e-15)
    return float(-np.mean(np.where(up, np.log(p), np.log1p(-p))))


__all__ = [
    "OBSERVABLE_COLUMNS",
    "OBSERVABLE_SCHEMA",
    "TRUTH_COLUMNS",
    "TRUTH_SCHEMA",
    "Process",
    "emission_loglik",
    "filter_oracle",
    "generate_markets",
    "simulate_symbols",
    "symbol_name",
]
