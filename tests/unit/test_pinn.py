"""The options PINN: residual, parity, autodiff Greeks, numpy serving path, saving, training."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprolab.datasets.options.blackscholes import GREEKS, bs_price_greeks
from reprolab.guard.keras.saving import save_keras_model
from reprolab.models.pinn import maths
from reprolab.models.pinn import model as pinn
from reprolab.models.pinn import train as pinn_train
from reprolab.models.pinn.numpy_model import NumpyPinn
from tests.tiny import repo_params

ROOT = Path(__file__).resolve().parents[2]


def bounds() -> dict:
    """The declared box of params.yaml in model coordinates."""
    from reprolab.datasets.options.generate import domain_bounds

    return domain_bounds(repo_params().options.generate.domain)


def _points(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {
        "x": g.uniform(-0.69, 0.69, n),
        "tau": g.uniform(2.0 / 365.0, 2.0, n),
        "sigma": g.uniform(0.05, 0.8, n),
        "r": g.uniform(0.0, 0.1, n),
    }


@pytest.fixture(scope="module")
def model():
    """A small network with random (non-trivial) weights, including the output layer."""
    m = pinn.build_pinn(
        dataclasses.replace(repo_params().train.pinn, hidden=16, depth=2), bounds(), seed=3
    )
    g = np.random.default_rng(1)
    for v in m.trainable_variables:
        v.assign(g.normal(size=tuple(v.shape)) * 0.3)
    return m


# --------------------------------------------------------------------------- the PDE
def test_residual_of_closed_form_is_zero_with_analytic_derivatives() -> None:
    p = _points(500)
    bs = bs_price_greeks(np.exp(p["x"]), 1.0, p["tau"], p["sigma"], p["r"], "call")
    v = bs["price"]
    v_x = bs["delta"] * np.exp(p["x"])
    v_xx = bs["gamma"] * np.exp(2 * p["x"]) + v_x
    v_tau = -bs["theta"]
    res = maths.pde_residual(v, v_x, v_xx, v_tau, p["sigma"], p["r"])
    assert np.max(np.abs(res)) < 1e-10


def test_residual_of_closed_form_is_zero_with_finite_differences() -> None:
    p = _points(300, seed=2)
    p["tau"] = np.maximum(p["tau"], 0.1)  # keep v_xx moderate for the difference quotient

    def v(x: np.ndarray, tau: np.ndarray) -> np.ndarray:
        return bs_price_greeks(np.exp(x), 1.0, tau, p["sigma"], p["r"], "call")["price"]

    x, tau, h = p["x"], p["tau"], 1e-4
    v0 = v(x, tau)
    v_x = (v(x + h, tau) - v(x - h, tau)) / (2 * h)
    v_xx = (v(x + h, tau) - 2 * v0 + v(x - h, tau)) / h**2
    v_tau = (v(x, tau + h) - v(x, tau - h)) / (2 * h)
    res = maths.pde_residual(v0, v_x, v_xx, v_tau, p["sigma"], p["r"])
    assert np.max(np.abs(res)) < 1e-5


def test_model_residual_matches_its_derivatives(model) -> None:
    p = _points(200)
    d = model.derivatives(p["x"], p["tau"], p["sigma"], p["r"])
    want = maths.pde_residual(d["v"], d["v_x"], d["v_xx"], d["v_tau"], p["sigma"], p["r"])
    np.testing.assert_allclose(model.residual(**p), want, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- the function
def test_terminal_value_is_the_payoff(model) -> None:
    x = np.linspace(-0.69, 0.69, 101)
    v = model.derivatives(x, 0.0, 0.3, 0.05)["v"]
    np.testing.assert_allclose(v, np.maximum(np.exp(x) - 1.0, 0.0), atol=1e-4)


def test_put_call_parity_holds_by_construction(model) -> None:
    p = _points(400)
    S = 100.0 * np.exp(p["x"])
    K = 100.0
    call = model.greeks(S, K, p["tau"], p["sigma"], p["r"], "call")
    put = model.greeks(S, K, p["tau"], p["sigma"], p["r"], "put")
    gap = call["price"] - put["price"] - (S - K * np.exp(-p["r"] * p["tau"]))
    assert np.max(np.abs(gap)) / K < 1e-12
    np.testing.assert_allclose(call["delta"] - put["delta"], 1.0, atol=1e-12)
    np.testing.assert_allclose(call["gamma"], put["gamma"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(call["vega"], put["vega"], rtol=1e-12, atol=1e-15)


def test_autodiff_greeks_equal_finite_differences_of_the_price(model) -> None:
    p = _points(200, seed=5)
    S, K = 100.0 * np.exp(p["x"]), 100.0
    tau, sigma, r = p["tau"], p["sigma"], p["r"]
    for kind in ("call", "put"):
        g = model.greeks(S, K, tau, sigma, r, kind)

        def price(S=S, tau=tau, sigma=sigma, r=r, kind=kind):
            return model.greeks(S, K, tau, sigma, r, kind)["price"]

        hs = 1e-5 * S
        fd_delta = (price(S=S + hs) - price(S=S - hs)) / (2 * hs)
        hs = 1e-4 * S
        fd_gamma = (price(S=S + hs) - 2 * g["price"] + price(S=S - hs)) / hs**2
        h = 1e-6
        fd_vega = (price(sigma=sigma + h) - price(sigma=sigma - h)) / (2 * h)
        fd_theta = -(price(tau=tau + h) - price(tau=tau - h)) / (2 * h)
        fd_rho = (price(r=r + h) - price(r=r - h)) / (2 * h)
        np.testing.assert_allclose(g["delta"], fd_delta, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(g["gamma"], fd_gamma, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(g["vega"], fd_vega, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(g["theta"], fd_theta, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(g["rho"], fd_rho, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- serving path
def test_numpy_path_equals_keras_path(model, tmp_path: Path) -> None:
    path = pinn.export_weights(model, tmp_path / "pinn.npz")
    served = NumpyPinn.load(path)
    p = _points(1000, seed=7)
    p["tau"][:10] = 1.0 / 365.0  # the shortest maturities, where gamma is largest
    S, K = 50.0 * np.exp(p["x"]), 50.0
    for kind in ("call", "put"):
        want = model.greeks(S, K, p["tau"], p["sigma"], p["r"], kind)
        got = served.greeks(S, K, p["tau"], p["sigma"], p["r"], kind)
        for name in GREEKS:
            scale = np.maximum(1.0, np.abs(want[name]))
            assert np.max(np.abs(got[name] - want[name]) / scale) < 1e-6, (kind, name)
    np.testing.assert_allclose(served.residual(**p), model.residual(**p), rtol=1e-9, atol=1e-9)
    whole, chunked = served.derivatives(**p), served.derivatives(**p, chunk=128)
    for k in maths.DERIVATIVES:
        np.testing.assert_array_equal(whole[k], chunked[k])
    # one contract: Keras's fixed-signature XLA function, numpy's single-row float path
    batch = model.greeks(S[:3], K, p["tau"][:3], p["sigma"][:3], p["r"][:3], "put")
    for i in range(3):
        args = (float(S[i]), K, float(p["tau"][i]), float(p["sigma"][i]), float(p["r"][i]))
        one = model.greeks(*args, "put")
        d = served.scalar_derivatives(np.log(args[0] / K), *args[2:])
        fast = maths.greeks_from_derivatives(d, np.log(args[0] / K), args[2], args[4], K, "put")
        for name in GREEKS:
            scale = max(1.0, abs(batch[name][i]))
            assert abs(one[name][0] - batch[name][i]) / scale < 1e-12, name
            assert abs(fast[name] - batch[name][i]) / scale < 1e-6, name


def test_saved_keras_file_depends_on_the_model_alone(model, tmp_path: Path) -> None:
    """Keras stamps the save time into a .keras file; the pipeline's saves do not carry it,
    so DVC sees two trainings with the same weights as the same output."""
    import time
    import zipfile

    first = save_keras_model(model, tmp_path / "a" / "model.keras").read_bytes()
    time.sleep(1.1)  # the stamp has one-second resolution
    second = save_keras_model(model, tmp_path / "b" / "model.keras").read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "a" / "model.keras") as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["model.keras"]  # no leftovers


def test_shared_objects_are_numbered_not_named_by_address() -> None:
    """Keras names shared objects by id(); the saved config numbers them, keeping the sharing."""
    from reprolab.guard.keras.saving import _renumber_shared_objects

    addr_a, addr_b = 140119652271184, 140119652270000
    config = {
        "layers": [
            {"dtype": {"shared_object_id": addr_a, "name": "float32"}},
            {"dtype": {"shared_object_id": addr_b}},
            {"dtype": {"shared_object_id": addr_a}},
        ]
    }
    ids = [
        layer["dtype"]["shared_object_id"]
        for layer in _renumber_shared_objects(config, {})["layers"]
    ]
    assert ids == [1, 2, 1]


def test_exported_file_is_small(tmp_path: Path) -> None:
    m = pinn.build_pinn(repo_params().train.pinn, bounds())
    path = pinn.export_weights(m, tmp_path / "pinn.npz")
    assert path.stat().st_size <= 1_000_000


def test_numpy_path_does_not_import_tensorflow(model, tmp_path: Path) -> None:
    path = pinn.export_weights(model, tmp_path / "pinn.npz")
    code = (
        "import sys; from reprolab.models.pinn.numpy_model import NumpyPinn; "
        f"m = NumpyPinn.load({str(path)!r}); m.greeks(1.0, 1.0, 0.5, 0.2, 0.01); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_keras_round_trip_gives_identical_predictions(model, tmp_path: Path) -> None:
    path = save_keras_model(model, tmp_path / "pinn.keras")  # what the stages save with
    loaded = pinn.load_pinn_model(path)
    p = _points(300, seed=9)
    a = model.derivatives(**p)
    b = loaded.derivatives(**p)
    for k in maths.DERIVATIVES:
        np.testing.assert_array_equal(a[k], b[k])
    coords = np.stack([p[k] for k in maths.COORDS], axis=1)
    np.testing.assert_array_equal(model(coords).numpy(), loaded(coords).numpy())
    np.testing.assert_array_equal(
        model.predict(coords, verbose=0), loaded.predict(coords, verbose=0)
    )


# --------------------------------------------------------------------------- training
def _frame(n: int, seed: int) -> pd.DataFrame:
    p = _points(n, seed)
    bs = bs_price_greeks(np.exp(p["x"]), 1.0, p["tau"], p["sigma"], p["r"], "call")
    return pd.DataFrame({**p, "call_price_k": bs["price"], "call_delta": bs["delta"]})


def _collocation(seed: int) -> dict[str, pd.DataFrame]:
    from reprolab.datasets.options.features import collocation_points

    params = replace(repo_params().options.features, n_interior=256, n_terminal=64, n_boundary=64)
    return collocation_points(
        params, repo_params().options.generate.domain, repo_params().options.split.heldout, seed
    )


TINY = replace(
    repo_params().train.pinn,
    hidden=8,
    depth=2,
    batch_size=64,
    rows_per_epoch=256,
    epochs_supervised=3,
    lr_supervised=(3e-3,),
    epochs_physics=1,
    lr_physics=(1e-3,),
    epochs_rar=1,
    lr_rar=(1e-4,),
    rar_candidates=128,
    rar_points=16,
    polish_iterations=4,
    polish_rows=256,
    n_val=128,
    patience=5,
)


def _train(tmp_path: Path, name: str, seen: list | None = None) -> pinn_train.PinnTrainResult:
    def hook(phase: str, epoch: int, logs: dict[str, float]) -> None:
        if seen is not None:
            seen.append((phase, epoch, logs))

    return pinn_train.train_pinn(
        _frame(400, 11),
        _frame(128, 12),
        _collocation(13),
        seed=5,
        checkpoint_dir=tmp_path / name,
        params=TINY,
        bounds=bounds(),
        on_epoch_end=hook,
        candidate_sampler=_sampler(),
    )


def _sampler():
    from reprolab.datasets.options.features import training_domain_sampler

    return training_domain_sampler(
        repo_params().options.generate.domain, repo_params().options.split.heldout
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[pinn_train.PinnTrainResult, list]:
    seen: list = []
    return _train(tmp_path_factory.mktemp("pinn_ref"), "a", seen), seen


def _weights(result: pinn_train.PinnTrainResult) -> list[np.ndarray]:
    return [v.numpy() for v in result.model.trainable_variables]


@pytest.mark.slow
def test_training_is_deterministic_and_reduces_the_loss(reference, tmp_path: Path) -> None:
    a, seen = reference
    b = _train(tmp_path, "b")
    wa, wb = _weights(a), _weights(b)
    assert len(wa) == len(wb) == 6
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.rar_points, b.rar_points)
    assert a.rar_points.shape == (16, 4)
    # refinement points are fresh draws from the training domain, never the held-out band
    assert (a.rar_points[:, 2] < 0.7).all()
    pool = {tuple(p) for p in maths.frame_coords(_collocation(13)["interior"])}
    assert not any(tuple(p) in pool for p in a.rar_points)

    phases = [s[0] for s in seen]
    assert phases == ["supervised_0"] * 3 + ["physics_0", "rar_0"] + ["polish"] * 4
    sup = [s[2] for s in seen if s[0] == "supervised_0"]
    assert sup[-1]["loss"] < sup[0]["loss"]
    assert sup[-1]["val_loss"] < sup[0]["val_loss"]
    phys = seen[3][2]
    assert {"price", "delta", "pde", "terminal", "boundary", "val_price_rel_l2"} <= phys.keys()
    # the L-BFGS polish: the training loss never rises, the validation terms come at the end
    polish = [s[2] for s in seen if s[0] == "polish"]
    assert all(b["loss"] <= a["loss"] for a, b in itertools.pairwise(polish))
    assert "val_price_rel_l2" in polish[-1]
    assert any(e.startswith("polish: L-BFGS, 4 iterations") for e in a.events)
    assert not (tmp_path / "b").exists()  # checkpoints and step records are cleaned up


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(reference, tmp_path: Path) -> None:
    def stop(phase: str, epoch: int, logs: dict[str, float]) -> None:
        if phase == "physics_0":
            raise _Stop

    with pytest.raises(_Stop):
        pinn_train.train_pinn(
            _frame(400, 11),
            _frame(128, 12),
            _collocation(13),
            seed=5,
            checkpoint_dir=tmp_path / "c",
            params=TINY,
            bounds=bounds(),
            on_epoch_end=stop,
            candidate_sampler=_sampler(),
        )
    assert (tmp_path / "c" / "supervised_0.done.npz").exists()
    seen: list = []
    c = _train(tmp_path, "c", seen)
    # the completed steps are not trained again
    assert [s[0] for s in seen] == ["rar_0"] + ["polish"] * 4
    for x, y in zip(_weights(reference[0]), _weights(c), strict=True):
        np.testing.assert_array_equal(x, y)
