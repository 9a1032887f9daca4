"""The serving pricer: validation, domain flags with closed-form fallback, cache, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from reprolab.blackscholes import bs_price_greeks
from reprolab.config import OptionsParams
from reprolab.pipelines.pinn import trained_domain
from reprolab.pricing import OutOfDomainWarning, Pricer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) PINN exported the way train@pinn exports it."""
    from reprolab.io import write_json
    from reprolab.models.pinn import build_pinn, export_weights

    directory = tmp_path_factory.mktemp("pinn")
    path = export_weights(build_pinn(hidden=8, depth=2, seed=3), directory / "weights.npz")
    write_json(directory / "domain.json", trained_domain(OptionsParams()))
    return path


def test_trained_domain_cuts_the_heldout_band_from_the_box() -> None:
    box = trained_domain(OptionsParams())
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
        [sys.executable, "-m", "reprolab.pricing", *args, *extra, "--model", str(exported)],
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
