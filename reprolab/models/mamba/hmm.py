"""A Gaussian hidden-Markov regime filter: the comparator that tries to reach the filter oracle.

The markets generator (:mod:`reprolab.build.markets.simulate`) switches between hidden
regimes, each with its own AR(1) return, gap, wick and volume law, and its *filter oracle*
forecasts the next direction with the HMM forward filter under the TRUE parameters. This
module does the same with FITTED parameters only:

* :func:`observables` turns one symbol's OHLCV into causal daily rows (row t uses rows <= t);
* :func:`fit_hmm` estimates a full-covariance Gaussian HMM by EM (hmmlearn) on the training
  sequences, several seeded starts per state count, the state count chosen by BIC;
* :func:`forward_filter` is our own log-space forward filter, ``P(s_t | obs up to t)``
  (filtered, never smoothed, so a row never sees a later row);
* :func:`p_up_next` mixes, over tomorrow's regime, the state's Gaussian conditional law of
  tomorrow's return given today's return (columns 0 and 1 of the observables), which carries
  the regime's AR sign;
* :func:`predict_series` chains the three for one symbol.

Everything but the fit is numpy (plus ``scipy.special.ndtr``); the fit is deterministic:
the same inputs give bit-identical parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from hmmlearn.base import _AbstractHMM
from hmmlearn.hmm import GaussianHMM
from scipy.special import ndtr

OBSERVABLE_NAMES: tuple[str, ...] = (
    "ret",  # r_t = ln(close_t / close_{t-1})
    "ret_lag",  # r_{t-1}
    "gap",  # ln(open_t / close_{t-1})
    "sqrt_wick_up",  # sqrt(ln(high_t / max(open_t, close_t)))
    "sqrt_wick_down",  # sqrt(ln(min(open_t, close_t) / low_t))
    "log_volume",  # ln(volume_t)
)
# Rows at the start of a series without a full set of observables (no r_{t-1} before t = 2).
N_WARMUP_ROWS = 2
_LOG_2PI = float(np.log(2.0 * np.pi))


def observables(
    open: np.ndarray,  # shadows the builtin: the OHLCV column name
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> np.ndarray:
    """Causal daily observables of ONE series, shape (T, 6) float64, columns ``OBSERVABLE_NAMES``.

    Row t uses rows <= t only: ``r_t``, ``r_{t-1}``, the overnight gap, both wicks (square
    root of the log-wick) and ``ln volume_t``. The first two rows (no lagged return yet) are
    NaN. Column 0 is ``r_t`` and column 1 ``r_{t-1}``: :func:`p_up_next` relies on it.
    """
    o, h, lo, c, v = (np.asarray(a, dtype=np.float64) for a in (open, high, low, close, volume))
    if any(a.ndim != 1 or a.shape != c.shape for a in (o, h, lo, v)) or c.ndim != 1:
        raise ValueError(
            "open, high, low, close and volume must be 1-D arrays of one length, got shapes "
            f"{[a.shape for a in (o, h, lo, c, v)]}"
        )
    n = c.shape[0]
    out = np.full((n, len(OBSERVABLE_NAMES)), np.nan)
    if n <= N_WARMUP_ROWS:
        return out
    ret = np.full(n, np.nan)
    ret[1:] = np.log(c[1:] / c[:-1])
    body_top = np.maximum(o, c)
    body_bottom = np.minimum(o, c)
    # The log-wicks are half-normal given the regime (skewness about 1, a hard floor at 0), a
    # poor fit for a Gaussian emission. Their square root is close to symmetric (skewness
    # about 0.09, |z|**0.5 is the fourth root of a chi-square(1)) while a regime's wick scale
    # still shows in both its mean and its spread; the log would turn the scale into a pure
    # shift but has a long left tail (skewness about -1.5) and blows up at a zero wick, which
    # real data has. Clipped at 0 so that a high below the body (bad data) cannot give a NaN.
    wick_up = np.sqrt(np.maximum(np.log(h / body_top), 0.0))
    wick_down = np.sqrt(np.maximum(np.log(body_bottom / lo), 0.0))
    s = slice(N_WARMUP_ROWS, None)
    out[s, 0] = ret[s]
    out[s, 1] = ret[N_WARMUP_ROWS - 1 : -1]
    out[s, 2] = np.log(o[s] / c[N_WARMUP_ROWS - 1 : -1])
    out[s, 3] = wick_up[s]
    out[s, 4] = wick_down[s]
    out[s, 5] = np.log(v[s])
    return out


@dataclass(frozen=True, eq=False)
class HMMParams:
    """A Gaussian HMM with full covariances; arrays are float64 and read-only.

    ``start`` (S,), ``transition`` (S, S) (rows: from, columns: to), ``means`` (S, k),
    ``covars`` (S, k, k). (``eq=False``: arrays have no single truth value; compare fields
    with ``np.array_equal``.)
    """

    start: np.ndarray
    transition: np.ndarray
    means: np.ndarray
    covars: np.ndarray

    def __post_init__(self) -> None:
        for name in ("start", "transition", "means", "covars"):
            arr = np.array(getattr(self, name), dtype=np.float64, copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        s = self.start.shape[0] if self.start.ndim == 1 else -1
        k = self.means.shape[1] if self.means.ndim == 2 else -1
        expected = {"start": (s,), "transition": (s, s), "means": (s, k), "covars": (s, k, k)}
        for name, shape in expected.items():
            if s < 1 or k < 1 or getattr(self, name).shape != shape:
                raise ValueError(
                    "HMMParams shapes must be start (S,), transition (S, S), means (S, k), "
                    "covars (S, k, k); got "
                    + ", ".join(f"{n} {getattr(self, n).shape}" for n in expected)
                )

    @property
    def n_states(self) -> int:
        return int(self.start.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe nested lists of floats (``json.dumps`` round-trips them exactly)."""
        return {
            "start": self.start.tolist(),
            "transition": self.transition.tolist(),
            "means": self.means.tolist(),
            "covars": self.covars.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HMMParams:
        return cls(
            start=np.asarray(d["start"], dtype=np.float64),
            transition=np.asarray(d["transition"], dtype=np.float64),
            means=np.asarray(d["means"], dtype=np.float64),
            covars=np.asarray(d["covars"], dtype=np.float64),
        )


class _RidgeGaussianHMM(GaussianHMM):
    """GaussianHMM whose full covariances get ``min_covar`` on the diagonal after every M-step
    (hmmlearn 0.3 only uses ``min_covar`` for its own initialisation of full covariances)."""

    def _compute_log_likelihood(self, X: np.ndarray) -> np.ndarray:
        # hmmlearn's full-covariance density calls scipy's solve_triangular per state and per
        # sequence, which dominated the fit's time; one matrix product per state does the same.
        n, k = X.shape
        out = np.empty((n, self.n_components))
        for j, (mean, cov) in enumerate(zip(self.means_, self.covars_, strict=True)):
            chol = np.linalg.cholesky(cov)
            white = (X - mean) @ np.linalg.inv(chol).T
            log_det = 2.0 * np.log(np.diagonal(chol)).sum()
            out[:, j] = -0.5 * (k * _LOG_2PI + log_det + np.einsum("ij,ij->i", white, white))
        return out

    def _compute_posteriors_log(self, fwdlattice: np.ndarray, bwdlattice: np.ndarray) -> np.ndarray:
        # Same normalisation as hmmlearn's (which goes through scipy's slower logsumexp).
        log_gamma = fwdlattice + bwdlattice
        log_gamma -= log_gamma.max(axis=1, keepdims=True)
        gamma = np.exp(log_gamma)
        gamma /= gamma.sum(axis=1, keepdims=True)
        return gamma

    def _accumulate_sufficient_statistics(
        self,
        stats: dict[str, Any],
        X: np.ndarray,
        lattice: np.ndarray,
        posteriors: np.ndarray,
        fwdlattice: np.ndarray,
        bwdlattice: np.ndarray,
    ) -> None:
        # The start and transition statistics as hmmlearn's; the Gaussian ones by matrix
        # products instead of hmmlearn's three-operand einsum for the full scatter matrices.
        _AbstractHMM._accumulate_sufficient_statistics(
            self, stats, X, lattice, posteriors, fwdlattice, bwdlattice
        )
        if "m" in self.params or "c" in self.params:
            stats["post"] += posteriors.sum(axis=0)
            stats["obs"] += posteriors.T @ X
        if "c" in self.params:
            for j in range(self.n_components):
                stats["obs*obs.T"][j] += (X * posteriors[:, j : j + 1]).T @ X

    def _do_mstep(self, stats: dict[str, Any]) -> None:
        super()._do_mstep(stats)
        if "c" in self.params:
            self.covars_ = self.covars_ + self.min_covar * np.eye(self.n_features)


def _em_run(
    z: np.ndarray,
    lengths: np.ndarray,
    start: np.ndarray,
    transition: np.ndarray,
    means: np.ndarray,
    covars: np.ndarray,
    *,
    min_covar: float,
    n_iter: int,
    tol: float,
) -> _RidgeGaussianHMM:
    """One EM run from the given parameters. hmmlearn's scaled forward-backward is about twice
    as fast as its log-space one but fails (ValueError) when a row is improbable under every
    state (an outlier): then the run is redone from the same start in log space. Either way
    the model scores in log space afterwards."""
    for implementation in ("scaling", "log"):
        model = _RidgeGaussianHMM(
            n_components=len(start),
            covariance_type="full",
            min_covar=min_covar,
            n_iter=n_iter,
            tol=tol,
            params="stmc",
            init_params="",
            implementation=implementation,
        )
        model.startprob_ = start
        model.transmat_ = transition
        model.means_ = means
        model.covars_ = covars
        try:
            model.fit(z, lengths)
        except ValueError as err:
            if implementation == "scaling" and "underflow" in str(err):
                continue
            raise
        break
    model.implementation = "log"
    return model


def _n_free_parameters(n_states: int, k: int) -> int:
    s = n_states
    return (s - 1) + s * (s - 1) + s * k + s * k * (k + 1) // 2


def _trim_sequences(sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Drop each sequence's leading incomplete rows; an incomplete row after them is an error."""
    if len(sequences) == 0:
        raise ValueError("fit_hmm needs at least one sequence")
    out: list[np.ndarray] = []
    k = None
    for i, seq in enumerate(sequences):
        a = np.asarray(seq, dtype=np.float64)
        if a.ndim != 2 or (k is not None and a.shape[1] != k):
            raise ValueError(
                f"sequence {i} has shape {a.shape}; every sequence must be (T, {k or 'k'})"
            )
        k = a.shape[1]
        complete = np.isfinite(a).all(axis=1)
        if not complete.any():
            raise ValueError(f"sequence {i} has no complete (finite) row")
        first = int(np.argmax(complete))
        if not complete[first:].all():
            bad = first + int(np.argmin(complete[first:]))
            raise ValueError(
                f"sequence {i}: row {bad} has a NaN or infinite value after the leading "
                f"warm-up rows (rows 0..{first - 1}); only leading rows may be incomplete"
            )
        out.append(a[first:])
    return out


def _kmeans_init(
    z: np.ndarray, n_states: int, rng: np.random.Generator, min_covar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, means, covars) from seeded k-means++ and Lloyd steps on a row subsample."""
    n, k = z.shape
    sub = z[np.sort(rng.choice(n, size=min(n, 4000), replace=False))]
    centers = np.empty((n_states, k))
    centers[0] = sub[rng.integers(sub.shape[0])]
    d2 = ((sub - centers[0]) ** 2).sum(axis=1)
    for j in range(1, n_states):
        total = d2.sum()
        pick = rng.choice(sub.shape[0], p=d2 / total) if total > 0 else rng.integers(len(sub))
        centers[j] = sub[pick]
        d2 = np.minimum(d2, ((sub - centers[j]) ** 2).sum(axis=1))
    labels = np.zeros(sub.shape[0], dtype=np.int64)
    for _ in range(25):
        dist = ((sub[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        new_labels = np.argmin(dist, axis=1)
        for j in range(n_states):
            members = sub[new_labels == j]
            if members.shape[0] > 0:
                centers[j] = members.mean(axis=0)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    pooled = np.cov(sub.T).reshape(k, k)
    covars = np.empty((n_states, k, k))
    counts = np.bincount(labels, minlength=n_states).astype(np.float64)
    for j in range(n_states):
        members = sub[labels == j]
        cov = np.cov(members.T).reshape(k, k) if members.shape[0] > 2 * k else pooled
        covars[j] = cov + min_covar * np.eye(k)
    start = (counts + 1.0) / (counts.sum() + n_states)
    return start, centers, covars


def _persistent_transition(n_states: int, stay: float = 0.95) -> np.ndarray:
    if n_states == 1:
        return np.ones((1, 1))
    t = np.full((n_states, n_states), (1.0 - stay) / (n_states - 1))
    np.fill_diagonal(t, stay)
    return t


def _canonical_order(params: HMMParams) -> HMMParams:
    """States sorted by the variance of r_t (column 0), ties by its mean: label-switching free."""
    order = np.lexsort((params.means[:, 0], params.covars[:, 0, 0]))
    return HMMParams(
        start=params.start[order],
        transition=params.transition[np.ix_(order, order)],
        means=params.means[order],
        covars=params.covars[order],
    )


def fit_hmm(
    sequences: list[np.ndarray],
    n_states: Sequence[int],
    n_init: int,
    seed: int,
    n_iter: int = 200,
    tol: float = 1e-4,
    *,
    min_covar: float = 1e-3,
) -> tuple[HMMParams, dict[str, Any]]:
    """Fit a full-covariance Gaussian HMM by EM on per-symbol observable sequences.

    Each sequence is a (T_i, k) array from :func:`observables`; its leading NaN rows are
    dropped, a NaN (or inf) after them raises a ValueError naming the sequence and row. The
    columns are standardised by their pooled mean and sd for EM (the fitted parameters are
    mapped back to the original units); ``min_covar`` is a ridge added, in those standardised
    units, to every covariance's diagonal after every M-step. ``tol`` is the EM stopping
    threshold on the gain in MEAN per-row log-likelihood (hmmlearn's own ``tol`` is on the
    total, which would scale with the data). For every state count, ``n_init`` runs start
    from k-means++ (seeded from ``np.random.SeedSequence(seed, spawn_key=(S, run))``) and the
    best final log-likelihood is kept; the state count with the lowest BIC is chosen, and its
    states are sorted by the variance of column 0 (r_t).

    Returns the chosen parameters and a JSON-safe selection report.
    """
    counts = [int(s) for s in n_states]
    if not counts or min(counts) < 1:
        raise ValueError(f"n_states must list state counts >= 1, got {list(n_states)}")
    if n_init < 1:
        raise ValueError(f"n_init must be >= 1, got {n_init}")
    trimmed = _trim_sequences(sequences)
    x = np.concatenate(trimmed, axis=0)
    lengths = np.array([a.shape[0] for a in trimmed], dtype=np.int64)
    n, k = x.shape
    loc = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - loc) / scale
    log_jacobian = float(n * np.log(scale).sum())  # log-lik(x) = log-lik(z) - this

    candidates: list[dict[str, Any]] = []
    fitted: dict[int, HMMParams] = {}
    for s in counts:
        best: tuple[float, _RidgeGaussianHMM] | None = None
        for run in range(n_init):
            rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(s, run)))
            start, means, covars = _kmeans_init(z, s, rng, min_covar)
            model = _em_run(
                z,
                lengths,
                start,
                _persistent_transition(s),
                means,
                covars,
                min_covar=min_covar,
                n_iter=n_iter,
                tol=tol * n,
            )
            ll = float(model.score(z, lengths))
            if np.isfinite(ll) and (best is None or ll > best[0]):
                best = (ll, model)
        if best is None:
            raise RuntimeError(f"every EM run for {s} states ended with a non-finite likelihood")
        ll_z, model = best
        history = list(model.monitor_.history)
        log_lik = ll_z - log_jacobian
        n_params = _n_free_parameters(s, k)
        candidates.append(
            {
                "n_states": s,
                "log_likelihood": log_lik,
                "bic": -2.0 * log_lik + n_params * float(np.log(n)),
                "n_params": n_params,
                "converged": bool(len(history) >= 2 and history[-1] - history[-2] < tol * n),
                "iterations": int(model.monitor_.iter),
            }
        )
        fitted[s] = _canonical_order(
            HMMParams(
                start=model.startprob_,
                transition=model.transmat_,
                means=model.means_ * scale + loc,
                covars=model.covars_ * np.outer(scale, scale),
            )
        )
    chosen = min(candidates, key=lambda c: c["bic"])["n_states"]
    report = {
        "criterion": "bic",
        "n_observations": int(n),
        "n_sequences": len(trimmed),
        "candidates": candidates,
        "chosen": int(chosen),
    }
    return fitted[chosen], report


def _emission_loglik(params: HMMParams, obs: np.ndarray) -> np.ndarray:
    """log N(obs_t; mean_j, cov_j) for every row and state, (T, S); 0 where a row is incomplete.

    Row by row with elementwise numpy only (no BLAS call whose blocking depends on T), so a
    row's value does not depend on how many rows are computed with it.
    """
    t_len, k = obs.shape
    complete = np.isfinite(obs).all(axis=1)
    x = np.where(complete[:, None], obs, 0.0)
    out = np.zeros((t_len, params.n_states))
    for j in range(params.n_states):
        chol = np.linalg.cholesky(params.covars[j])
        chol_inv = np.linalg.solve(chol, np.eye(k))  # lower triangular
        diff = x - params.means[j]
        white = (diff[:, None, :] * chol_inv[None, :, :]).sum(axis=2)
        maha = (white * white).sum(axis=1)
        log_det = 2.0 * float(np.log(np.diagonal(chol)).sum())
        out[:, j] = -0.5 * (k * _LOG_2PI + log_det + maha)
    out[~complete] = 0.0  # an incomplete (warm-up) row carries no evidence
    return out


def forward_filter(params: HMMParams, obs: np.ndarray) -> np.ndarray:
    """Filtered state probabilities ``P(s_t | obs rows <= t)``, (T, S), by a log-space
    forward recursion: ``alpha_0 ∝ start * p(obs_0)``, ``alpha_t ∝ (alpha_{t-1} @ A) p(obs_t)``.

    Rows with a NaN (the warm-up rows) carry no evidence: there the distribution is the prior
    propagated (``start``, then through the transition matrix). Never smoothed: row t is the
    same whether or not rows after t exist.
    """
    obs = np.asarray(obs, dtype=np.float64)
    if obs.ndim != 2 or obs.shape[1] != params.n_features:
        raise ValueError(f"obs must be (T, {params.n_features}), got {obs.shape}")
    ll = _emission_loglik(params, obs)
    transition = params.transition
    alpha = np.empty_like(ll)
    with np.errstate(divide="ignore"):
        log_prior = np.log(params.start)
        for t in range(ll.shape[0]):
            if t > 0:
                log_prior = np.log((alpha[t - 1][:, None] * transition).sum(axis=0))
            log_joint = log_prior + ll[t]
            w = np.exp(log_joint - log_joint.max())
            alpha[t] = w / w.sum()
    return alpha


def _return_conditionals(params: HMMParams, ret: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per state, mean and sd of column 0 given column 1 == ``ret`` (T,), each (T, S);
    the marginal of column 0 where ``ret`` is NaN."""
    mu0, mu1 = params.means[:, 0], params.means[:, 1]
    s00, s01, s11 = params.covars[:, 0, 0], params.covars[:, 0, 1], params.covars[:, 1, 1]
    slope = s01 / s11
    cond_sd = np.sqrt(np.maximum(s00 - s01 * slope, 0.0))
    known = np.isfinite(ret)
    r = np.where(known, ret, 0.0)[:, None]
    mean = np.where(known[:, None], mu0 + slope * (r - mu1), mu0)
    sd = np.where(known[:, None], cond_sd, np.sqrt(s00))
    return mean, sd


def p_up_next(params: HMMParams, filtered: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """``P(r_{t+1} > 0 | obs rows <= t)``, (T,).

    ``sum_j P(s_{t+1} = j | obs <= t) * Phi(m_j / s_j)`` with ``P(s_{t+1} | .) = filtered @
    transition`` and ``m_j``, ``s_j`` the mean and sd of state j's return (column 0) given
    its lagged return (column 1) equal to today's return ``obs[t, 0]``: ``m_j = mu0 + S01 /
    S11 (r_t - mu1)``, ``s_j^2 = S00 - S01^2 / S11``. Where ``r_t`` is NaN, the marginal
    ``(mu0, sqrt(S00))``.
    """
    filtered = np.asarray(filtered, dtype=np.float64)
    obs = np.asarray(obs, dtype=np.float64)
    if filtered.ndim != 2 or filtered.shape[1] != params.n_states:
        raise ValueError(f"filtered must be (T, {params.n_states}), got {filtered.shape}")
    if obs.ndim != 2 or obs.shape[0] != filtered.shape[0]:
        raise ValueError(f"obs must be (T={filtered.shape[0]}, k), got {obs.shape}")
    # Elementwise, not a BLAS product: a row's value never depends on the other rows.
    predicted = (filtered[:, :, None] * params.transition[None, :, :]).sum(axis=1)
    mean, sd = _return_conditionals(params, obs[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        p_state = np.where(sd > 0, ndtr(mean / sd), (mean > 0).astype(np.float64))
    return (predicted * p_state).sum(axis=1)


def predict_series(
    params: HMMParams,
    open: np.ndarray,  # shadows the builtin: the OHLCV column name
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> np.ndarray:
    """P(next return up | everything observed up to each day) for one series, (T,) in [0, 1]."""
    obs = observables(open, high, low, close, volume)
    return np.clip(p_up_next(params, forward_filter(params, obs), obs), 0.0, 1.0)


__all__ = [
    "N_WARMUP_ROWS",
    "OBSERVABLE_NAMES",
    "HMMParams",
    "fit_hmm",
    "forward_filter",
    "observables",
    "p_up_next",
    "predict_series",
]
