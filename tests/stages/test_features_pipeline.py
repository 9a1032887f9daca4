"""features@markets as the stage runs it: windows, train-only scaler, registry, gates."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprolab.build.markets import stage as pipeline
from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.errors import DataQualityError
from reprolab.core.io import read_json
from reprolab.core.manifest import seal
from reprolab.core.resources import StageResources
from reprolab.core.tables import check_finite, read_parquet, write_parquet
from reprolab.datasets.markets.windows import fit_scaler, materialize
from tests import tiny

WINDOW = 20


def _tiny() -> Params:
    return tiny.params(markets={"generate": {"n_days": 500}, "split": {"embargo": WINDOW + 1}})


def _res(tmp: Path, name: str) -> StageResources:
    return StageResources(name, tmp / "resources", show_progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("features")
    with contextlib.chdir(root):
        params = _tiny()
        for step in ("generate", "split_augment", "features", "data_metrics"):
            getattr(pipeline, step)(params, _res(root, step))
        yield root


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_windows_label_only_their_own_part(built: Path) -> None:
    feats = built / paths.features("markets")
    calendar = read_json(built / paths.split("markets") / "calendar.json")
    for name in ("train", "val", "test"):
        rows = read_parquet(feats / "rows" / name)
        windows = read_parquet(feats / "windows" / f"{name}.parquet")
        label_rows = windows["row"].to_numpy() + 1
        assert not rows["context"].to_numpy()[label_rows].any()
        first = pd.Timestamp(calendar[name]["first_date"])
        last = pd.Timestamp(calendar[name]["last_date"])
        assert windows["label_date"].between(first, last).all()
        x, y = materialize(rows, windows, pipeline.FEATURE_NAMES, WINDOW)
        assert x.shape == (len(windows), WINDOW, len(pipeline.FEATURE_NAMES))
        assert np.isfinite(x).all() and set(np.unique(y)) <= {0, 1}
        # Window i ends at its own row: the last step equals that row's features.
        np.testing.assert_array_equal(
            x[:, -1, :],
            rows[pipeline.FEATURE_NAMES].to_numpy(dtype=np.float32)[windows["row"].to_numpy()],
        )
    train = read_parquet(feats / "windows" / "train.parquet")
    assert train["augmented"].any() and (train["augmented"] == (train["copy"] > 0)).all()


def test_registry_describes_every_feature(built: Path) -> None:
    registry = read_json(built / paths.features("markets") / "registry.json")
    rows = read_parquet(built / paths.features("markets") / "rows" / "train")
    names = [f["name"] for f in registry["features"]]
    assert names == pipeline.FEATURE_NAMES and set(names) <= set(rows.columns)
    for f in registry["features"]:
        assert f["formula"] and f["inputs"] and "window" in f


def test_scaler_is_fit_on_original_training_rows_only(built: Path, tmp_path: Path) -> None:
    feats = built / paths.features("markets")
    train = read_parquet(feats / "rows" / "train")
    original = train.loc[train["copy"] == 0, pipeline.FEATURE_NAMES].astype(np.float64)
    scaler = read_json(feats / "scaler.json")
    expected = fit_scaler(original, pipeline.FEATURE_NAMES)
    for col in pipeline.FEATURE_NAMES:
        assert scaler[col]["mean"] == pytest.approx(expected[col]["mean"], rel=1e-5, abs=1e-6)
        assert scaler[col]["std"] == pytest.approx(expected[col]["std"], rel=1e-5)

    # Rewrite validation and test data wildly: the scaler and training features must not move.
    work = tmp_path / "work"
    shutil.copytree(built / "data", work / "data")
    with contextlib.chdir(work):
        for name in ("val", "test"):
            for part in sorted((paths.split("markets") / name).glob("part-*.parquet")):
                frame = pd.read_parquet(part)
                for col in ("open", "high", "low", "close"):
                    frame[col] = frame[col] * np.linspace(1.0, 3.0, len(frame))
                frame["volume"] = frame["volume"] * 7
                write_parquet(part, frame)
            seal(paths.split("markets") / name, "split_augment@markets")  # as if produced so
        pipeline.features(_tiny(), _res(work, "features"))
    new = work / paths.features("markets")
    assert _sha(new / "scaler.json") == _sha(feats / "scaler.json")
    for part in sorted((feats / "rows" / "train").glob("*.parquet")):
        assert _sha(new / "rows" / "train" / part.name) == _sha(part)
    assert _sha(new / "windows" / "test.parquet") != _sha(feats / "windows" / "test.parquet")


def test_quality_gate_names_the_column(built: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(built / "data", work / "data")
    part = work / paths.split("markets") / "train" / "part-00000.parquet"
    frame = pd.read_parquet(part)
    frame.loc[frame.index[300], "volume"] = 0
    write_parquet(part, frame)
    seal(part.parent, "split_augment@markets")  # a producer's fault, not a changed file
    gate = r"part-00000\.parquet: row 300: volume"
    with contextlib.chdir(work), pytest.raises(DataQualityError, match=gate):
        pipeline.features(_tiny(), _res(work, "features"))


def test_finite_gate_names_column_and_respects_the_nan_limit() -> None:
    frame = pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0)})
    check_finite(frame, ["a", "b"], "t")
    frame.loc[3, "b"] = np.inf
    with pytest.raises(DataQualityError, match=r"column .b. has 1 infinite value.*row 3"):
        check_finite(frame, ["a", "b"], "t")
    frame.loc[3, "b"] = np.nan
    with pytest.raises(DataQualityError, match=r"column .b. has NaN share 1\.0000%"):
        check_finite(frame, ["a", "b"], "t", max_nan_share=0.0)
    check_finite(frame, ["a", "b"], "t", max_nan_share=0.02)
    with pytest.raises(DataQualityError, match=r"missing column\(s\) \['c'\]"):
        check_finite(frame, ["a", "c"], "t")


def test_data_metrics_report_the_oracle_per_split(built: Path) -> None:
    report = read_json(built / paths.data_metrics("markets"))
    for name in ("train", "val", "test"):
        part = report[name]
        assert part["windows_original"] > 0 and part["symbols"] == 3
        assert 0.0 < part["oracle_accuracy"] < 1.0 and 0.0 < part["up_share"] < 1.0
    copies = _tiny().markets.split.augment.copies
    assert report["train"]["windows_augmented"] == copies * report["train"]["windows_original"]
