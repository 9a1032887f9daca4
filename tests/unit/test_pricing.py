"""The serving pricer: validation, domain flags with closed-form fallback, cache, CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from reprolab.core.goals import goals_of
from reprolab.datasets.options.blackscholes import bs_price_greeks
from reprolab.datasets.options.generate import domain_bounds
from reprolab.models.pinn.train import trained_domain
from reprolab.serve.pricer import OutOfDomainWarning, Pricer
from tests.tiny import repo_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PINN with random weights, exported the way train@pinn exports it.

    Every layer is random (the output layer too, which training would start at zero), so the
    network's correction is far from zero and every serving path has something to get wrong.
    """
    from reprolab.core.io import write_json
    from reprolab.models.pinn.model import build_pinn, export_weights

    directory = tmp_path_factory.mktemp("pinn")
    model = build_pinn(
        dataclasses.replace(repo_params().train.pinn, hidden=8, depth=2),
        domain_bounds(repo_params().options.generate.domain),
        seed=3,
    )
    gen = np.random.default_rng(0)
    for var in model.trainable_variables:
        var.assign(gen.normal(0.0, 0.5, var.shape))
    path = export_weights(model, directory / "weights.npz")
    write_json(directory / "domain.json", trained_domain(repo_params().options))
    return path


def test_trained_domain_cuts_the_heldout_band_from_the_box() -> None:
    box = trained_domain(repo_params().options)
    assert box["sigma"] == [0.05, 0.7]
    assert box["x"] == pytest.approx([np.log(0.5), np.log(2.0)])


def test_load_is_cached_per_process(exported: Path) -> None:
    assert Pricer.load(exported) is Pricer.load(exported)


def test_parity_and_shapes(exported: Path) -> None:
    pricer = Pricer.load(exported)
    S = np.array([[80.0, 100.0], [120.0, 150.0]])
    call = pricer.price(S, 100.0, 0.5, 0.2, 0.03, kind="call")
    put = pricer.price(S, 100.0, 0.5, 0.2, 0.03, kind="put")
    assert call["price"].shape == (2, 2) and call["in_domain"].all()
    parity = call["price"] - put["price"] - (S - 100.0 * np.exp(-0.03 * 0.5))
    assert np.max(np.abs(parity)) / 100.0 < 1e-12


def test_scalar_queries_are_floats_and_cached(exported: Path) -> None:
    pricer = Pricer.load(exported)
    first = pricer.price(100.0, 100.0, 0.25, 0.2, 0.05, kind="put")
    hits = pricer._scalar.cache_info().hits
    again = pricer.price(100.0, 100.0, 0.25, 0.2, 0.05, kind="put")
    assert again == first and pricer._scalar.cache_info().hits == hits + 1
    assert isinstance(first["price"], float) and first["in_domain"] is True
    assert set(first) == {"price", "delta", "gamma", "vega", "theta", "rho", "in_domain"}


GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")
CONTRACTS = [  # S, K, tau, sigma, r: across moneyness, maturity and volatility
    (100.0, 100.0, 0.25, 0.2, 0.05),
    (62.0, 100.0, 1.7, 0.6, 0.01),
    (180.0, 100.0, 0.02, 0.1, 0.09),
    (3.0, 2.5, 0.5, 0.35, 0.0),
]


@pytest.mark.parametrize("kind", ["call", "put"])
def test_single_row_path_equals_the_batch_path(exported: Path, kind: str) -> None:
    """One contract on floats gives the batch path's numbers (same formulas, no shortcuts)."""
    pricer = Pricer.load(exported, "float64")
    batch = pricer.price(*(np.array(c) for c in zip(*CONTRACTS, strict=True)), kind=kind)
    for i, contract in enumerate(CONTRACTS):
        one = pricer.price(*contract, kind=kind)
        for g in GREEKS:
            assert one[g] == pytest.approx(batch[g][i], rel=1e-12, abs=1e-13), (contract, g)


@pytest.mark.parametrize("n", [50, 5000])  # small and large arrays take different tanh code
def test_prices_without_greeks_equal_the_prices_with_them(exported: Path, n: int) -> None:
    pricer = Pricer.load(exported, "float64")
    S = np.linspace(60.0, 190.0, n)
    for kind in ("call", "put"):
        full = pricer.price(S, 100.0, 0.7, 0.3, 0.02, kind=kind)
        alone = pricer.price(S, 100.0, 0.7, 0.3, 0.02, kind=kind, greeks=False)
        assert set(alone) == {"price", "in_domain"}
        np.testing.assert_allclose(alone["price"], full["price"], rtol=0, atol=1e-12)


def test_float32_layers_agree_with_float64_to_1e6(exported: Path) -> None:
    """The fast (float32) serving precision stays within 1e-6 of float64: price and delta
    absolutely (per unit of K), gamma, vega, theta and rho relative to their scale."""
    fast, exact = Pricer.load(exported, "float32"), Pricer.load(exported, "float64")
    assert fast is not exact
    gen = np.random.default_rng(1)
    S, tau = gen.uniform(55.0, 195.0, 2000), gen.uniform(0.01, 2.0, 2000)
    sigma, r = gen.uniform(0.05, 0.7, 2000), gen.uniform(0.0, 0.1, 2000)
    a = fast.price(S, 100.0, tau, sigma, r, kind="put")
    b = exact.price(S, 100.0, tau, sigma, r, kind="put")
    assert np.max(np.abs(a["price"] - b["price"])) / 100.0 < 1e-6
    assert np.max(np.abs(a["delta"] - b["delta"])) < 1e-6
    for g in ("gamma", "vega", "theta", "rho"):
        scale = np.max(np.abs(b[g]))
        assert np.max(np.abs(a[g] - b[g])) <= 1e-6 * scale, g
    assert np.max(np.abs(a["price"] - b["price"])) > 0  # it really ran in float32


def test_out_of_domain_scalars_warn_every_time_and_are_not_cached(exported: Path) -> None:
    pricer = Pricer.load(exported)
    for _ in range(2):
        with pytest.warns(OutOfDomainWarning):
            out = pricer.price(100.0, 100.0, 0.5, 0.75, 0.03)
        assert out["in_domain"] is False
        assert out["price"] == pytest.approx(
            float(bs_price_greeks(100.0, 100.0, 0.5, 0.75, 0.03, "call")["price"]), rel=1e-12
        )


def test_outside_the_trained_domain_uses_the_closed_form_with_a_warning(exported: Path) -> None:
    pricer = Pricer.load(exported)
    with pytest.warns(OutOfDomainWarning, match=r"rows \[1\]"):
        out = pricer.price(np.array([100.0, 100.0]), 100.0, 0.5, np.array([0.2, 0.75]), 0.03)
    assert out["in_domain"].tolist() == [True, False]
    exact = bs_price_greeks(100.0, 100.0, 0.5, 0.75, 0.03, "call")
    for greek in ("price", "delta", "gamma", "vega", "theta", "rho"):
        assert out[greek][1] == pytest.approx(float(exact[greek]), rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"S": np.array([100.0, np.nan])}, r"S is NaN or infinite at rows \[1\]"),
        ({"sigma": -0.2}, r"sigma must be > 0: rows \[0\]"),
        ({"sigma": float("nan")}, r"sigma is NaN or infinite at rows \[0\]"),
        ({"S": 0.0}, r"S must be > 0: rows \[0\]"),
        ({"tau": np.array([0.5, -1.0, 0.1])}, r"tau must be > 0 \(years\): rows \[1\]"),
        ({"kind": "straddle"}, "kind must be 'call' or 'put'"),
    ],
)
def test_bad_input_names_rows_and_fields(exported: Path, kwargs: dict, message: str) -> None:
    args = {"S": 100.0, "K": 100.0, "tau": 0.5, "sigma": 0.2, "r": 0.03, "kind": "call"}
    args.update(kwargs)
    with warnings.catch_warnings(), pytest.raises(ValueError, match=message):
        warnings.simplefilter("ignore")
        Pricer.load(exported).price(**args)


def _cli(exported: Path, S: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["--S", S, "--K", "100", "--tau", "0.25", "--sigma", "0.2", "--r", "0.05"]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reprolab.serve.pricer",
            *args,
            *extra,
            "--model",
            str(exported),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_prints_json(exported: Path) -> None:
    proc = _cli(exported, "100", "--kind", "put")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["kind"] == "put" and out["source"] == "pinn"
    assert {"price", "delta", "gamma", "vega", "theta", "rho"} <= set(out)
    bad = _cli(exported, "-1")
    assert bad.returncode == 2 and bad.stderr.startswith("error: pricing: invalid option input")


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_values_only_layers_match_the_tanh_network(exported: Path, precision: str) -> None:
    """price_k runs a rewritten MLP (sigmoid with folded weights): it must give the values
    of the tanh network that the derivative path runs, to the precision of its dtype."""
    model = Pricer.load(exported, precision).model
    gen = np.random.default_rng(2)
    n = 6000  # over one chunk
    x, tau = gen.uniform(-0.69, 0.69, n), gen.uniform(0.003, 2.0, n)
    sigma, r = gen.uniform(0.05, 0.7, n), gen.uniform(0.0, 0.1, n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e^a overflowing to inf is expected, never reported
        values = model.price_k(x, tau, sigma, r)
    full = model.derivatives(x, tau, sigma, r)["v"]
    tol = 1e-6 if precision == "float32" else 1e-13
    np.testing.assert_allclose(values, full, rtol=0, atol=tol)


def test_benchmark_reports_every_goal_and_serves_without_tensorflow(
    exported: Path, tmp_path: Path
) -> None:
    from reprolab.benchmark.pricer import PRICER_GOALS, run

    goals = goals_of(repo_params().validate.benchmark)
    report = run(exported, calls=40, warmup=5, batch=3000, tensorflow=False, goals=goals)
    assert list(report["goals"]) == list(PRICER_GOALS)
    assert report["serving_process"]["tensorflow_imported"] is False
    for path in ("numpy_float32", "numpy_float64", "closed_form_numpy", "cached"):
        lat = report["single_call"][path]
        assert 0 < lat["p50_us"] <= lat["p95_us"] <= lat["p99_us"], path
        assert len(lat["p95_us_per_round"]) == report["rounds"] == 5, path
    assert report["goals"]["tf_single_p95_us"]["passed"] is False  # not measured, never "met"
    assert report["batch_rates"]["prices_float32_per_s"] > 0
