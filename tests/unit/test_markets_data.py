"""The markets generator: consistent OHLCV, per-symbol streams, and a correct filter oracle."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp

from reprolab.build.markets.simulate import (
    Process,
    filter_oracle,
    generate_markets,
    simulate_symbols,
)
from reprolab.core.config import MarketsGenerateParams
from tests.tiny import repo_params

SEED = 7


def _all(params: MarketsGenerateParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    obs, truth = zip(*generate_markets(params, SEED), strict=True)
    return pd.concat(obs, ignore_index=True), pd.concat(truth, ignore_index=True)


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _all(replace(repo_params().markets.generate, n_symbols=3, n_days=400))


def test_adding_symbols_or_changing_parts_keeps_existing_symbols(small) -> None:
    obs3, truth3 = small
    obs5, truth5 = _all(
        replace(repo_params().markets.generate, n_symbols=5, n_days=400, symbols_per_part=2)
    )
    keep = obs5["symbol"].isin(obs3["symbol"].unique())
    pd.testing.assert_frame_equal(obs5.loc[keep].reset_index(drop=True), obs3)
    pd.testing.assert_frame_equal(truth5.loc[keep].reset_index(drop=True), truth3)
    assert obs5["symbol"].nunique() == 5
    other_seed, _ = _all(replace(repo_params().markets.generate, n_symbols=3, n_days=400))
    assert other_seed.equals(obs3)  # same seed, same data
    different = pd.concat(
        [
            o
            for o, _ in generate_markets(
                replace(repo_params().markets.generate, n_symbols=3, n_days=400), SEED + 1
            )
        ]
    )
    assert not np.allclose(different["close"].to_numpy(), obs3["close"].to_numpy())


def test_ohlcv_is_consistent(small) -> None:
    obs, _ = small
    assert (obs["high"] >= obs[["open", "close"]].max(axis=1)).all()
    assert (obs["low"] <= obs[["open", "close"]].min(axis=1)).all()
    assert (obs["volume"] > 0).all()
    assert obs.groupby("symbol")["date"].apply(lambda d: d.is_monotonic_increasing).all()
    assert list(obs.columns) == ["symbol", "date", "open", "high", "low", "close", "volume"]


def test_volume_rises_with_volatility() -> None:
    obs, truth = _all(replace(repo_params().markets.generate, n_symbols=4, n_days=2000))
    sigma = np.asarray(repo_params().markets.generate.regimes.sigma)[truth["regime"].to_numpy()]
    rho = stats.spearmanr(sigma, obs["volume"]).statistic
    assert rho > 0.5


def _reference_filter(obs: pd.DataFrame, p: Process) -> np.ndarray:
    """A plain per-symbol log-space forward filter written independently of the library."""
    out = []
    for _, s in obs.groupby("symbol", sort=True):
        o, h, lo, c, v = (
            s[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume")
        )
        log_alpha = np.log(p.stationary)
        prev_c, prev_r = c[0], 0.0
        for t in range(len(c)):
            if t > 0:
                log_alpha = logsumexp(log_alpha[:, None] + np.log(p.transition), axis=0)
            r = np.log(c[t] / prev_c)
            ll = np.zeros(len(p.mu))
            for k in range(len(p.mu)):
                sd = p.sigma[k]
                if t > 0:
                    ll[k] += stats.norm.logpdf(r, p.mu[k] + p.phi[k] * prev_r, sd)
                ll[k] += stats.norm.logpdf(np.log(o[t] / prev_c), 0, p.gap_scale * sd)
                ll[k] += stats.halfnorm.logpdf(np.log(h[t] / max(o[t], c[t])), 0, p.wick_scale * sd)
                ll[k] += stats.halfnorm.logpdf(
                    np.log(min(o[t], c[t]) / lo[t]), 0, p.wick_scale * sd
                )
                ll[k] += stats.norm.logpdf(np.log(v[t]), p.log_volume_mean[k], p.volume_noise)
            log_alpha = log_alpha + ll
            log_alpha -= logsumexp(log_alpha)
            pred = np.exp(log_alpha) @ p.transition
            out.append(float(pred @ stats.norm.cdf((p.mu + p.phi * r) / p.sigma)))
            prev_c, prev_r = c[t], r
    return np.asarray(out)


def test_oracle_matches_an_independent_forward_filter() -> None:
    params = replace(repo_params().markets.generate, n_symbols=2, n_days=150)
    obs, truth = _all(params)
    expected = _reference_filter(obs, Process.from_params(params))
    np.testing.assert_allclose(truth["oracle_p_up"].to_numpy(), expected, rtol=1e-9, atol=1e-12)


def test_oracle_uses_no_future_observation() -> None:
    params = repo_params().markets.generate
    proc = Process.from_params(params)
    sim = simulate_symbols(["A", "B"], 300, proc, SEED, 100.0)
    arrays = [sim[k].astype(float) for k in ("open", "high", "low", "close", "volume")]
    _, base = filter_oracle(*arrays, proc)
    t = 150
    changed = [a.copy() for a in arrays]
    for a in changed:
        a[:, t + 1 :] *= 1.3
    _, after = filter_oracle(*changed, proc)
    np.testing.assert_array_equal(after[:, : t + 1], base[:, : t + 1])
    assert not np.allclose(after[:, t + 1 :], base[:, t + 1 :])


def test_oracle_is_calibrated_and_beats_simple_rules() -> None:
    obs, truth = _all(replace(repo_params().markets.generate, n_symbols=8, n_days=2520))
    close = obs["close"].to_numpy().reshape(8, -1)
    p = truth["oracle_p_up"].to_numpy().reshape(8, -1)[:, 1:-1]
    up = (close[:, 2:] > close[:, 1:-1]).ravel()
    last_up = (close[:, 1:-1] > close[:, :-2]).ravel()
    p = p.ravel()
    oracle_acc = ((p > 0.5) == up).mean()
    assert oracle_acc > max(up.mean(), 1 - up.mean()) + 0.02  # majority class
    assert oracle_acc > (last_up == up).mean()  # persistence
    # Calibration: in each probability bin the realised up-share matches the forecast.
    bins = np.quantile(p, np.linspace(0, 1, 6))
    which = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, 4)
    for b in range(5):
        sel = which == b
        se = np.sqrt(p[sel].mean() * (1 - p[sel].mean()) / sel.sum())
        assert abs(up[sel].mean() - p[sel].mean()) < 4 * se
