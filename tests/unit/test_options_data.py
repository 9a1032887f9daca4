"""The options data set, its scale-free coordinates and the PDE collocation points.

The generator must give exactly the declared number of contracts over the declared domain,
reproducibly and independently of the chunk size; the collocation points must stay out of the
held-out band the model is later tested on; the coordinates must be homogeneous in (S, K).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from reprolab.core.config import (
    HeldoutRegion,
    OptionsGenerateParams,
)
from reprolab.core.errors import ValidationError
from reprolab.datasets.options.blackscholes import GREEKS, bs_price_greeks
from reprolab.datasets.options.features import (
    COORDINATE_COLUMNS,
    collocation_points,
    option_coordinates,
    training_domain_sampler,
)
from reprolab.datasets.options.generate import OPTION_COLUMNS, generate_options
from tests.tiny import repo_params

SEED = 20261121
SMALL = replace(repo_params().options.generate, n_contracts=5000, chunk_rows=1234)
DOMAIN = repo_params().options.generate.domain
X_MIN, X_MAX = np.log(DOMAIN.moneyness_min), np.log(DOMAIN.moneyness_max)
TAU_MIN, TAU_MAX = DOMAIN.tau_min_days / 365.0, DOMAIN.tau_max_days / 365.0
FEATURES = replace(repo_params().options.features, n_interior=3000, n_terminal=400, n_boundary=301)


def _all(params: OptionsGenerateParams, seed: int = SEED) -> pd.DataFrame:
    return pd.concat(list(generate_options(params, seed)), ignore_index=True)


@pytest.fixture(scope="module", params=["sobol", "uniform"])
def sampler(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def data(sampler: str) -> pd.DataFrame:
    return _all(replace(SMALL, sampler=sampler))


# --------------------------------------------------------------------------- generator
def test_chunks_and_row_count(sampler: str) -> None:
    """Exactly n_contracts rows, in chunks of at most chunk_rows, ids 0..n-1 in order."""
    chunks = list(generate_options(replace(SMALL, sampler=sampler), SEED))
    assert [len(c) for c in chunks] == [1234, 1234, 1234, 1234, 64]
    ids = np.concatenate([c["contract_id"].to_numpy() for c in chunks])
    np.testing.assert_array_equal(ids, np.arange(5000))
    for c in chunks:
        assert list(c.columns) == OPTION_COLUMNS
        assert c["contract_id"].dtype == np.int64
        assert all(c[col].dtype == np.float64 for col in OPTION_COLUMNS[1:])


def test_rows_lie_in_the_declared_domain(data: pd.DataFrame) -> None:
    """Every contract is inside the domain box; K is the configured strike, S = K * moneyness."""
    assert not data.isna().any().any()
    assert np.isfinite(data.drop(columns="contract_id").to_numpy()).all()
    m = data["moneyness"]
    # 1e-15 relative: S/K may round one ulp past exp(ln(bound)).
    assert m.min() >= DOMAIN.moneyness_min * (1 - 1e-15)
    assert m.max() <= DOMAIN.moneyness_max * (1 + 1e-15)
    assert data["tau"].between(TAU_MIN, TAU_MAX).all()
    assert data["sigma"].between(DOMAIN.sigma_min, DOMAIN.sigma_max).all()
    assert data["r"].between(DOMAIN.r_min, DOMAIN.r_max).all()
    assert (data["K"] == SMALL.strike).all()
    np.testing.assert_allclose(data["S"] / data["K"], m, rtol=1e-15, atol=0)


def test_log_moneyness_is_uniform(data: pd.DataFrame) -> None:
    """x = ln(S/K) (not S/K) is uniform: ten equal x-bins hold 10 % of the rows each, and every
    coordinate reaches near both ends of its range (the whole box is covered)."""
    x = np.log(data["moneyness"].to_numpy())
    counts, _ = np.histogram(x, bins=10, range=(X_MIN, X_MAX))
    # 500 expected per bin; 20 % is > 4 binomial standard deviations (22) for the uniform
    # sampler, and uniform-in-S/K would put 2.5x more points in the top bin than the bottom.
    assert np.all(np.abs(counts - 500) < 100), counts
    for col, lo, hi in (
        ("tau", TAU_MIN, TAU_MAX),
        ("sigma", DOMAIN.sigma_min, DOMAIN.sigma_max),
        ("r", DOMAIN.r_min, DOMAIN.r_max),
    ):
        width = hi - lo
        assert data[col].min() < lo + 0.01 * width and data[col].max() > hi - 0.01 * width, col


def test_labels_are_the_closed_form(data: pd.DataFrame) -> None:
    """The label columns are bs_price_greeks of the row's own inputs, bit for bit."""
    for kind in ("call", "put"):
        want = bs_price_greeks(data["S"], data["K"], data["tau"], data["sigma"], data["r"], kind)
        for greek in GREEKS:
            np.testing.assert_array_equal(data[f"{kind}_{greek}"].to_numpy(), want[greek])


def test_deterministic_for_a_seed(sampler: str, data: pd.DataFrame) -> None:
    """The same seed gives the same rows; another seed gives different ones."""
    params = replace(SMALL, sampler=sampler)
    pd.testing.assert_frame_equal(_all(params, SEED), data)
    other = _all(params, SEED + 1)
    assert not np.allclose(other["S"].to_numpy(), data["S"].to_numpy())
    assert not np.allclose(other["sigma"].to_numpy(), data["sigma"].to_numpy())


@pytest.mark.parametrize("chunk_rows", [1000, 2048, 4999, 5000, 100_000])
def test_independent_of_chunk_rows(sampler: str, data: pd.DataFrame, chunk_rows: int) -> None:
    """Chunking is a memory knob only: any chunk_rows gives the identical data set."""
    got = _all(replace(SMALL, sampler=sampler, chunk_rows=chunk_rows))
    pd.testing.assert_frame_equal(got, data, check_exact=True)


def test_samplers_differ() -> None:
    """'sobol' and 'uniform' are different designs (the setting is not ignored)."""
    a = _all(replace(SMALL, sampler="sobol"))
    b = _all(replace(SMALL, sampler="uniform"))
    assert not np.allclose(a["tau"].to_numpy(), b["tau"].to_numpy())


def test_sobol_is_more_even_than_uniform() -> None:
    """The Sobol' design fills the box more evenly (smaller discrepancy) than iid draws."""
    from scipy.stats import qmc

    def discrepancy(sampler: str) -> float:
        df = _all(replace(SMALL, n_contracts=2048, sampler=sampler))
        u = np.column_stack(
            [
                (np.log(df["moneyness"]) - X_MIN) / (X_MAX - X_MIN),
                (df["tau"] - TAU_MIN) / (TAU_MAX - TAU_MIN),
                (df["sigma"] - DOMAIN.sigma_min) / (DOMAIN.sigma_max - DOMAIN.sigma_min),
                (df["r"] - DOMAIN.r_min) / (DOMAIN.r_max - DOMAIN.r_min),
            ]
        )
        return float(qmc.discrepancy(np.clip(u, 0.0, 1.0)))

    assert discrepancy("sobol") < 0.5 * discrepancy("uniform")


# --------------------------------------------------------------------------- coordinates
def test_coordinates_values(data: pd.DataFrame) -> None:
    """Coordinates and normalised labels are the documented functions of the priced row."""
    data = data.assign(region=np.where(data["contract_id"] % 2 == 0, "train", "test"))
    c = option_coordinates(data)
    assert list(c.columns) == [*COORDINATE_COLUMNS, "region"]
    assert (c["region"] == data["region"]).all()
    assert not c.drop(columns="region").isna().any().any()
    S, K, tau, sigma, r = (data[k].to_numpy() for k in ("S", "K", "tau", "sigma", "r"))
    x = np.log(S / K)
    np.testing.assert_array_equal(c["x"], x)
    np.testing.assert_allclose(c["s"], sigma * np.sqrt(tau), rtol=1e-15)
    np.testing.assert_allclose(c["fwd_x"], x + r * tau, rtol=1e-15)
    np.testing.assert_allclose(c["fwd_scaled"], (x + r * tau) / (sigma * np.sqrt(tau)), rtol=1e-15)
    for kind in ("call", "put"):
        np.testing.assert_allclose(c[f"{kind}_price_k"], data[f"{kind}_price"] / K, rtol=1e-15)
        np.testing.assert_array_equal(c[f"{kind}_delta"], data[f"{kind}_delta"])
        np.testing.assert_allclose(c[f"{kind}_gamma_k"], data[f"{kind}_gamma"] * K, rtol=1e-15)
        for greek in ("vega", "theta", "rho"):
            np.testing.assert_allclose(
                c[f"{kind}_{greek}_k"], data[f"{kind}_{greek}"] / K, rtol=1e-15
            )


def test_coordinates_are_scale_free_exact(data: pd.DataFrame) -> None:
    """Scaling S and K by 3 (and each label by its power of K) leaves every coordinate and
    *_k label unchanged: the normalisation uses the right power of K for each Greek."""
    scaled = data.copy()
    scaled["S"] *= 3.0
    scaled["K"] *= 3.0
    for kind in ("call", "put"):
        for greek in ("price", "vega", "theta", "rho"):
            scaled[f"{kind}_{greek}"] *= 3.0
        scaled[f"{kind}_gamma"] /= 3.0
    a, b = option_coordinates(data), option_coordinates(scaled)
    # atol 1e-16: x = ln(S/K) near the money is ~1e-5 and the one-ulp change of 3S/3K moves it
    # by 1e-16 absolute.
    for col in COORDINATE_COLUMNS[1:]:
        np.testing.assert_allclose(b[col], a[col], rtol=1e-12, atol=1e-16, err_msg=col)


def test_coordinates_are_scale_free_repriced(sampler: str, data: pd.DataFrame) -> None:
    """Homogeneity of the prices themselves: contracts generated with K = 3 (same draws) give
    the same coordinates and *_k labels as with K = 1, to 1e-12 relative. Floor 1e-15 (in
    units of K): deep OTM prices are differences of nearly equal terms, measured 6.7e-16."""
    a = option_coordinates(data)
    b = option_coordinates(_all(replace(SMALL, sampler=sampler, strike=3.0)))
    for col in COORDINATE_COLUMNS[1:]:
        np.testing.assert_allclose(b[col], a[col], rtol=1e-12, atol=1e-15, err_msg=col)
    np.testing.assert_array_equal(b["contract_id"], a["contract_id"])


def test_coordinates_reject_missing_columns_and_bad_scale(data: pd.DataFrame) -> None:
    """Missing inputs and non-positive S or K are named errors, not NaN coordinates."""
    with pytest.raises(ValidationError, match=r"missing column.*put_rho"):
        option_coordinates(data.drop(columns="put_rho"))
    bad = data.head(5).copy()
    bad.loc[3, "K"] = 0.0
    with pytest.raises(ValidationError, match=r"K must be > 0 \(row 3: 0.0\)"):
        option_coordinates(bad)


# --------------------------------------------------------------------------- collocation
HELDOUTS = {
    "sigma-top": HeldoutRegion(column="sigma", low=0.7, high=0.8),
    "moneyness-top": HeldoutRegion(column="moneyness", low=1.6, high=2.0),
    "moneyness-inside": HeldoutRegion(column="moneyness", low=0.9, high=1.1),
    "tau-inside": HeldoutRegion(column="tau", low=0.5, high=1.0),
    "r-inside": HeldoutRegion(column="r", low=0.04, high=0.06),
}


def _held_value(frame: pd.DataFrame, column: str) -> np.ndarray:
    return np.exp(frame["x"].to_numpy()) if column == "moneyness" else frame[column].to_numpy()


@pytest.fixture(scope="module", params=list(HELDOUTS))
def colloc(request: pytest.FixtureRequest) -> tuple[HeldoutRegion, dict[str, pd.DataFrame]]:
    heldout = HELDOUTS[request.param]
    return heldout, collocation_points(FEATURES, DOMAIN, heldout, SEED)


def test_collocation_sizes_columns_and_finiteness(colloc) -> None:
    """Each set has its configured size and columns, and no NaN or inf anywhere."""
    _, pts = colloc
    base = ["x", "tau", "sigma", "r", "s", "fwd_x", "fwd_scaled"]
    assert set(pts) == {"interior", "terminal", "boundary"}
    assert list(pts["interior"].columns) == base
    assert list(pts["terminal"].columns) == [*base, "call_price_k"]
    assert list(pts["boundary"].columns) == [*base, "call_price_k"]
    assert len(pts["interior"]) == FEATURES.n_interior
    assert len(pts["terminal"]) == FEATURES.n_terminal
    assert len(pts["boundary"]) == FEATURES.n_boundary
    for name, frame in pts.items():
        values = frame.to_numpy()
        assert values.dtype == np.float64 and np.isfinite(values).all(), name


def test_collocation_avoids_the_heldout_band(colloc) -> None:
    """No collocation point lies in the held-out band, in any set."""
    heldout, pts = colloc
    for name, frame in pts.items():
        v = _held_value(frame, heldout.column)
        inside = (v >= heldout.low) & (v <= heldout.high)
        assert not inside.any(), f"{name}: {inside.sum()} points in the held-out band"
        if heldout.column == "moneyness":
            x = frame["x"].to_numpy()
            assert not ((x >= np.log(heldout.low)) & (x <= np.log(heldout.high))).any()


def test_collocation_covers_the_training_domain(colloc) -> None:
    """Interior points fill the training domain: inside the box, tau in (tau_min, tau_max],
    and present on both sides of an inner band (rejection, not shrinking the box)."""
    heldout, pts = colloc
    f = pts["interior"]
    assert f["x"].between(X_MIN, X_MAX).all()
    assert (f["tau"] > TAU_MIN).all() and (f["tau"] <= TAU_MAX).all()
    assert f["sigma"].between(DOMAIN.sigma_min, DOMAIN.sigma_max).all()
    assert f["r"].between(DOMAIN.r_min, DOMAIN.r_max).all()
    v = _held_value(f, heldout.column)
    top = {"moneyness": DOMAIN.moneyness_max, "sigma": DOMAIN.sigma_max}.get(heldout.column)
    below = v < heldout.low
    assert below.mean() > 0.2
    if top is not None and heldout.high >= top:
        assert below.all() and v.max() > heldout.low - 0.05 * (heldout.high - heldout.low)
    else:
        assert (v > heldout.high).mean() > 0.2


def test_terminal_targets_are_the_payoff(colloc) -> None:
    """Terminal points sit at tau = 0 with target max(e^x - 1, 0); fwd_scaled is 0 there."""
    _, pts = colloc
    t = pts["terminal"]
    assert (t["tau"] == 0.0).all() and (t["s"] == 0.0).all()
    assert (t["fwd_scaled"] == 0.0).all()
    np.testing.assert_array_equal(t["fwd_x"], t["x"])
    np.testing.assert_array_equal(t["call_price_k"], np.maximum(np.exp(t["x"]) - 1.0, 0.0))
    assert (t["call_price_k"] > 0).any() and (t["call_price_k"] == 0).any()


def test_boundary_points_and_targets(colloc) -> None:
    """Half the boundary points at the lowest training x, half at the highest, with the
    closed-form call price / K as target."""
    heldout, pts = colloc
    b = pts["boundary"]
    x_hi = X_MAX
    if heldout.column == "moneyness" and heldout.high >= DOMAIN.moneyness_max:
        x_hi = np.log(heldout.low)  # the band covers the top edge: just below the band
    n_low = FEATURES.n_boundary // 2
    np.testing.assert_array_equal(b["x"].to_numpy()[:n_low], X_MIN)
    np.testing.assert_allclose(b["x"].to_numpy()[n_low:], x_hi, rtol=0, atol=1e-8)
    assert (b["x"].to_numpy()[n_low:] < x_hi + 1e-15).all()
    assert (b["tau"] > TAU_MIN).all() and (b["tau"] <= TAU_MAX).all()
    want = bs_price_greeks(np.exp(b["x"]), 1.0, b["tau"], b["sigma"], b["r"], "call")["price"]
    np.testing.assert_array_equal(b["call_price_k"], want)
    # deep OTM at the bottom edge (almost worthless), deep ITM at the top (about S/K - e^{-r tau})
    assert b["call_price_k"].iloc[:n_low].max() < 0.5
    assert (b["call_price_k"].iloc[n_low:] > np.exp(x_hi) - 1.0 - 1e-12).all()


def test_collocation_is_seeded() -> None:
    """Same seed, same points; another seed, other points."""
    heldout = HELDOUTS["sigma-top"]
    a = collocation_points(FEATURES, DOMAIN, heldout, SEED)
    b = collocation_points(FEATURES, DOMAIN, heldout, SEED)
    c = collocation_points(FEATURES, DOMAIN, heldout, SEED + 1)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True)
        assert not np.allclose(a[name]["sigma"], c[name]["sigma"]), name


def test_collocation_rejects_a_band_covering_everything() -> None:
    """A band over the whole sampled range leaves no training domain: a named error."""
    heldout = HeldoutRegion(column="r", low=-0.5, high=0.5)
    with pytest.raises(ValidationError, match="covers the whole sampled range"):
        collocation_points(FEATURES, DOMAIN, heldout, SEED)


def test_refinement_sampler_draws_fresh_training_domain_points(colloc) -> None:
    """The PINN's refinement candidates: inside the box, never in the held-out band, uniform
    (both sides of an inner band), and reproducible from the generator alone."""
    heldout, _ = colloc
    sample = training_domain_sampler(DOMAIN, heldout)
    pts = sample(np.random.default_rng(4), 3000)
    assert pts.shape == (3000, 4)
    frame = pd.DataFrame(pts, columns=["x", "tau", "sigma", "r"])
    v = _held_value(frame, heldout.column)
    assert not ((v >= heldout.low) & (v <= heldout.high)).any()
    assert frame["x"].between(X_MIN, X_MAX).all() and (frame["tau"] > TAU_MIN).all()
    assert (v < heldout.low).mean() > 0.2
    np.testing.assert_array_equal(pts, sample(np.random.default_rng(4), 3000))
    assert not np.array_equal(pts, sample(np.random.default_rng(5), 3000))
