"""The one checkpoint rule for every model: format, corrupt-file policy, fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reprolab.core.config import load_params
from reprolab.guard.common import checkpoint as ck

ROOT = Path(__file__).resolve().parents[2]

FORMATS = {
    "npz": (
        lambda path, key: ck.save_npz(path, key, {"step": 3}, {"w": np.arange(4.0)}),
        ck.load_npz,
    ),
    "torch": (lambda path, key: ck.save_torch(path, key, {"step": 3}), ck.load_torch),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_round_trip_under_the_same_fingerprint(tmp_path: Path, fmt: str) -> None:
    save, load = FORMATS[fmt]
    save(tmp_path / "c", "key-a")
    events: list[str] = []
    loaded = load(tmp_path / "c", "key-a", events.append)
    assert loaded is not None and events == []
    assert (loaded[0] if fmt == "npz" else loaded)["step"] == 3


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_another_fingerprint_is_discarded_with_one_line(tmp_path: Path, fmt: str) -> None:
    save, load = FORMATS[fmt]
    save(tmp_path / "c", "key-a")
    events: list[str] = []
    assert load(tmp_path / "c", "key-b", events.append) is None
    assert len(events) == 1 and "different set-up" in events[0] and "\n" not in events[0]
    assert not (tmp_path / "c").exists()  # never resumed by a later run either


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_file_is_discarded_never_raised(tmp_path: Path, fmt: str, damage: str) -> None:
    save, load = FORMATS[fmt]
    path = tmp_path / "c"
    save(path, "key-a")
    data = path.read_bytes()
    path.write_bytes(
        {"garbage": b"not a checkpoint", "truncated": data[: len(data) // 2], "empty": b""}[damage]
    )
    events: list[str] = []
    assert load(path, "key-a", events.append) is None
    assert len(events) == 1 and events[0].startswith(f"discarded checkpoint {path}: unreadable")
    assert not path.exists()


def test_missing_is_silent(tmp_path: Path) -> None:
    events: list[str] = []
    assert ck.load_npz(tmp_path / "none", "k", events.append) is None
    assert ck.load_torch(tmp_path / "none", "k", events.append) is None
    assert events == []


def _fingerprint(tmp_path: Path, params, data: bytes, code: str = "x = 1\n") -> str:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "part-0.parquet").write_bytes(data)
    return ck.stage_fingerprint(
        params,
        model="mamba",
        dataset="markets",
        inputs=[tmp_path / "data"],
        modules=["reprolab.models.mamba.stage"],
    )


def test_the_fingerprint_covers_upstream_params_data_and_code(tmp_path: Path) -> None:
    """What made a resumed Mamba use weights trained on other data: every part must count."""
    from dataclasses import replace

    params = load_params(ROOT / "params.yaml")
    base = _fingerprint(tmp_path, params, b"rows")
    assert _fingerprint(tmp_path, params, b"rows") == base
    assert _fingerprint(tmp_path, params, b"other rows") != base  # input data
    gen = replace(params.markets.generate, gap_scale=0.3)
    upstream = replace(params, markets=replace(params.markets, generate=gen))
    assert _fingerprint(tmp_path, upstream, b"rows") != base  # an upstream param
    epochs = replace(params.train.mamba, epochs=params.train.mamba.epochs + 1)
    own = replace(params, train=replace(params.train, mamba=epochs))
    assert _fingerprint(tmp_path, own, b"rows") != base  # the stage's own param


def test_the_code_hash_follows_the_import_closure(tmp_path: Path) -> None:
    from reprolab.guard.common.deps import code_hash

    pkg = tmp_path / "reprolab"
    pkg.mkdir()
    (pkg / "a.py").write_text("from reprolab import b\n")
    (pkg / "b.py").write_text("x = 1\n")
    (pkg / "c.py").write_text("y = 1\n")
    before = code_hash(["reprolab.a"], tmp_path)
    (pkg / "c.py").write_text("y = 2\n")  # not imported: no change
    assert code_hash(["reprolab.a"], tmp_path) == before
    (pkg / "b.py").write_text("x = 2\n")  # imported by a: a new fingerprint
    assert code_hash(["reprolab.a"], tmp_path) != before


UPSTREAM = {
    "mamba": ("markets", "generate", "gap_scale", 0.3),
    "pinn": ("options", "split", "train", 0.6),
    "cet": ("contexts", "generate", "noise", 0.4),
}


@pytest.mark.parametrize("model", sorted(UPSTREAM))
def test_each_models_fingerprint_sees_its_upstream_params_and_features(
    tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed run must never use weights trained on other data: for all three models, an
    upstream param or a changed feature file gives a new fingerprint (so the checkpoint is
    discarded), and the same inputs give the same one (so a resume is possible)."""
    from dataclasses import replace

    dataset, step, key, value = UPSTREAM[model]
    monkeypatch.chdir(tmp_path)
    features = tmp_path / "data" / "features" / dataset
    features.mkdir(parents=True)
    (features / "part-00000.parquet").write_bytes(b"rows")
    params = load_params(ROOT / "params.yaml")
    base = ck.train_fingerprint(params, model)
    assert ck.train_fingerprint(params, model) == base
    section = getattr(params, dataset)
    changed = replace(section, **{step: replace(getattr(section, step), **{key: value})})
    assert ck.train_fingerprint(replace(params, **{dataset: changed}), model) != base
    (features / "part-00000.parquet").write_bytes(b"other rows")
    assert ck.train_fingerprint(params, model) != base
