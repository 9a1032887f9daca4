"""Split first, augment training data only, and keep an embargo between the parts."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprolab.build.markets import stage as pipeline
from reprolab.build.markets.split import augment_train, chronological_calendar, split_markets
from reprolab.core.config import Params
from reprolab.core.resources import StageResources
from reprolab.core.tables import read_parquet
from reprolab.datasets.markets.windows import make_windows
from tests.tiny import repo_params


def _observed(n_symbols: int, n_days: int) -> pd.DataFrame:
    dates = pd.bdate_range("2020-01-01", periods=n_days)
    rows = []
    gen = np.random.default_rng(0)
    for i in range(n_symbols):
        close = 100 * np.exp(np.cumsum(0.01 * gen.standard_normal(n_days)))
        rows.append(
            pd.DataFrame(
                {
                    "symbol": f"S{i}",
                    "date": dates,
                    "open": close * 0.999,
                    "high": close * 1.01,
                    "low": close * 0.98,
                    "close": close,
                    "volume": np.full(n_days, 1000),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def _window_spans(table: pd.DataFrame, window: int) -> pd.DataFrame:
    """Windows with the date of their first input row."""
    table = table.assign(feat=0.0)
    w = make_windows(table, ["feat"], window)
    w["first_date"] = table["date"].to_numpy()[w["row"].to_numpy() - window + 1]
    return w


@settings(max_examples=40, deadline=None)
@given(
    n_days=st.integers(300, 900),
    window=st.integers(2, 40),
    extra_embargo=st.integers(0, 20),
    train=st.floats(0.3, 0.8),
)
def test_no_training_window_touches_a_validation_or_test_window(
    n_days: int, window: int, extra_embargo: int, train: float
) -> None:
    rest = (1.0 - train) / 2
    params = replace(
        repo_params().markets.split,
        train=train,
        val=rest,
        test=1.0 - train - rest,
        embargo=window + 1 + extra_embargo,
    )
    observed = _observed(2, n_days)
    calendar = chronological_calendar(pd.DatetimeIndex(observed["date"].unique()), params)
    parts = split_markets(observed, calendar)
    spans = {name: _window_spans(parts[name], window) for name in parts}
    train_w = spans["train"]
    for later in ("val", "test"):
        w = spans[later]
        assert not w.empty
        # Every input and label of a later window comes after every training label.
        assert w["first_date"].min() > train_w["label_date"].max()
        # No validation/test timestamp falls inside a training window.
        held_out = pd.concat([w["first_date"], w["label_date"]])
        assert held_out.min() > train_w["label_date"].max()
    assert spans["test"]["first_date"].min() > spans["val"]["label_date"].max()
    # Labels come only from the part itself, never from its context rows.
    for name in ("val", "test"):
        lo, hi = calendar.bounds[name]
        assert spans[name]["label_date"].min() == calendar.dates[lo]
        assert spans[name]["label_date"].max() == calendar.dates[hi - 1]


def test_calendar_is_shared_and_gaps_are_the_embargo() -> None:
    dates = pd.bdate_range("2020-01-01", periods=1000)
    cal = chronological_calendar(dates, replace(repo_params().markets.split, embargo=61))
    (a0, a1), (b0, b1), (c0, c1) = (cal.bounds[k] for k in ("train", "val", "test"))
    assert a0 == 0 and c1 == 1000
    assert b0 - a1 == 61 and c0 - b1 == 61
    assert a1 == int(0.7 * (1000 - 122))


def test_augmentation_touches_training_rows_only_and_marks_them() -> None:
    observed = _observed(3, 500)
    cal = chronological_calendar(
        pd.DatetimeIndex(observed["date"].unique()), repo_params().markets.split
    )
    parts = split_markets(observed, cal)
    aug = augment_train(
        parts["train"], replace(repo_params().markets.split.augment, copies=2), seed=1
    )
    assert aug["augmented"].all() and set(aug["copy"]) == {1, 2}
    assert len(aug) == 2 * len(parts["train"])
    assert set(aug["date"]) <= set(parts["train"]["date"])
    assert (aug["high"] >= aug[["open", "close"]].max(axis=1) - 1e-12).all()
    assert (aug["low"] <= aug[["open", "close"]].min(axis=1) + 1e-12).all()
    assert not np.allclose(
        aug.loc[aug["copy"] == 1, "close"].to_numpy(), parts["train"]["close"].to_numpy()
    )
    for name in ("val", "test"):
        assert not parts[name]["augmented"].any()
    off = augment_train(
        parts["train"], replace(repo_params().markets.split.augment, copies=0), seed=1
    )
    assert off.empty
    with pytest.raises(Exception, match="original training rows only"):
        augment_train(parts["val"], replace(repo_params().markets.split.augment, copies=2), seed=1)


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _run_split(tmp_path: Path, params: Params) -> Path:
    pipeline.generate(
        params, StageResources("generate@markets", tmp_path / "res", show_progress=False)
    )
    pipeline.split_augment(
        params, StageResources("split_augment@markets", tmp_path / "res", show_progress=False)
    )
    return Path("data/split/markets")


@pytest.mark.slow
def test_val_and_test_outputs_are_byte_identical_whatever_the_augmentation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = repo_params()
    small = replace(base.markets.generate, n_symbols=3, n_days=400, symbols_per_part=2)
    digests = []
    for augment in (
        repo_params().markets.split.augment,
        replace(repo_params().markets.split.augment, copies=0),
        replace(
            repo_params().markets.split.augment,
            copies=3,
            jitter=0.5,
            scale_min=0.5,
            scale_max=2.0,
            warp=0.5,
        ),
    ):
        split = replace(base.markets.split, embargo=21, augment=augment)
        features = replace(base.markets.features, window=20)
        params = replace(
            base,
            resources=replace(base.resources, progress=False),
            markets=replace(base.markets, generate=small, split=split, features=features),
        )
        out = _run_split(tmp_path, params)
        digests.append(_digest(out))
        train = read_parquet(out / "train")
        assert train["augmented"].sum() == (train["copy"] > 0).sum()
        assert train["augmented"].sum() == augment.copies * (train["copy"] == 0).sum()
        for name in ("val", "test"):
            assert not read_parquet(out / name)["augmented"].any()
    for name in ("val", "test"):
        views = [{k: v for k, v in d.items() if k.startswith(name + "/")} for d in digests]
        assert views[0] and views[0] == views[1] == views[2]
