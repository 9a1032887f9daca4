"""Table manifests: a lost, extra, changed, unreadable or re-typed part is one clear line.

Every case starts from what generate@markets really writes (tiny profile), then breaks one
file the way a person or a tool would, and reads it back as the stages do.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprolab.build.markets import stage as markets
from reprolab.build.markets.simulate import OBSERVABLE_SCHEMA
from reprolab.core import paths
from reprolab.core.errors import DataQualityError, DependencyError
from reprolab.core.io import read_json
from reprolab.core.manifest import MANIFEST, seal, sealed_dir, verified_parts
from reprolab.core.resources import StageResources
from reprolab.core.tables import check_finite, list_parts, read_parquet, write_parquet
from tests import tiny

RAW = paths.raw("markets")  # data/raw/markets, relative to the stage's working directory
LOST = "part-00001.parquet"  # the tiny profile's second part: 400 rows of symbol SYM0002


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("manifest")
    with contextlib.chdir(root):
        res = StageResources("generate@markets", root / "resources", show_progress=False)
        markets.generate(tiny.params(), res)
    return root


@pytest.fixture
def work(generated: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the generated raw data, as the working directory."""
    shutil.copytree(generated / "data", tmp_path / "data")
    with contextlib.chdir(tmp_path):
        yield tmp_path


def _line(kind: type[Exception], target: Path = RAW) -> str:
    """The one line reading ``target`` fails with."""
    with pytest.raises(kind) as caught:
        read_parquet(target)
    line = str(caught.value)
    assert "\n" not in line
    return line


def test_an_intact_table_reads_and_its_manifest_describes_it(work: Path) -> None:
    assert [p.name for p in list_parts(RAW)] == ["part-00000.parquet", LOST]
    manifest = read_json(RAW / MANIFEST)
    assert manifest["producer"] == "generate@markets" and manifest["rows"] == 1200
    lost = manifest["files"][1]
    assert lost["name"] == LOST and lost["rows"] == 400
    assert lost["sha256"] == hashlib.sha256((RAW / LOST).read_bytes()).hexdigest()
    assert lost["ids"] == {"column": "symbol", "distinct": 1, "first": "SYM0002", "last": "SYM0002"}
    assert lost["schema"] == OBSERVABLE_SCHEMA
    assert len(read_parquet(RAW)) == 1200


def test_a_deleted_part_is_named_with_what_it_held(work: Path) -> None:
    (RAW / LOST).unlink()
    assert _line(DataQualityError) == (
        f"data/raw/markets: {LOST} is missing (400 rows; symbol SYM0002); "
        "generate@markets wrote 2 file(s) here: rerun it"
    )
    with pytest.raises(DataQualityError, match=re.escape(f"{LOST} is missing")):
        list_parts(RAW)  # what the stages iterate


def test_a_copied_part_is_an_extra_part(work: Path) -> None:
    shutil.copy(RAW / "part-00000.parquet", RAW / "part-00002.parquet")
    assert _line(DataQualityError) == (
        "data/raw/markets: part-00002.parquet is not in _manifest.json; "
        "generate@markets wrote 2 file(s) here: rerun it"
    )


def test_a_changed_part_is_named(work: Path) -> None:
    frame = pd.read_parquet(RAW / LOST)
    frame["close"] *= 1.01  # same schema, other numbers
    write_parquet(RAW / LOST, frame)
    expected = (
        f"data/raw/markets/{LOST}: changed since generate@markets wrote it (its sha256 "
        "differs from _manifest.json's; it held 400 rows; symbol SYM0002); "
        "rerun generate@markets"
    )
    assert _line(DataQualityError) == expected
    assert _line(DataQualityError, RAW / LOST) == expected  # a single-file read checks too


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: np.random.default_rng(0).bytes(len(b)), id="garbage"),
    ],
)
def test_an_unreadable_part_is_named(work: Path, damage: object) -> None:
    part = RAW / LOST
    part.write_bytes(damage(part.read_bytes()))  # type: ignore[operator]
    assert _line(DataQualityError) == (
        f"data/raw/markets/{LOST}: not a readable parquet file "
        "(Parquet magic bytes not found in footer); rerun generate@markets"
    )


@pytest.mark.parametrize(
    ("column", "retype", "found", "expected"),
    [
        ("close", str, "large_string", "double"),
        ("date", str, "large_string", "timestamp[us]"),
        ("volume", "float64", "double", "int64"),
    ],
)
def test_a_part_of_another_type_names_file_column_and_type(
    work: Path, column: str, retype: object, found: str, expected: str
) -> None:
    frame = pd.read_parquet(RAW / LOST)
    write_parquet(RAW / LOST, frame.astype({column: retype}))
    assert _line(DataQualityError) == (
        f"data/raw/markets/{LOST}: column '{column}' is {found}, expected {expected} "
        "(as generate@markets wrote it); rerun generate@markets"
    )


def test_a_missing_manifest_says_which_stage_to_rerun(work: Path) -> None:
    (RAW / MANIFEST).unlink()
    assert _line(DependencyError) == (
        "data/raw/markets: no _manifest.json, so its files cannot be checked "
        "(rerun generate@markets)"
    )
    assert _line(DependencyError, paths.split("markets") / "train") == (
        "data/split/markets/train: not found (run split_augment@markets first)"
    )


def test_a_generator_cannot_write_another_type_than_its_schema(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = markets.generate_markets

    def float_volume(*args: object, **kwargs: object) -> Iterator[tuple[pd.DataFrame, ...]]:
        for observed, hidden in real(*args, **kwargs):  # type: ignore[arg-type]
            yield observed.astype({"volume": "float64"}), hidden

    monkeypatch.setattr(markets, "generate_markets", float_volume)
    before = {d: d.stat().st_ino for d in (RAW, paths.truth("markets"))}
    line = (
        "data/raw/markets/part-00000.parquet: column 'volume' is double, expected int64 "
        "(generate@markets's schema)"
    )
    res = StageResources("generate@markets", work / "resources", show_progress=False)
    with pytest.raises(DataQualityError, match=re.escape(line)):
        markets.generate(tiny.params(), res)
    # Neither output was swapped: raw and truth stay the previous, matching pair.
    assert {d: d.stat().st_ino for d in before} == before
    verified_parts(RAW)


def test_the_parts_of_one_table_must_agree(tmp_path: Path) -> None:
    frame = pd.DataFrame({"symbol": ["A", "B"], "volume": [1, 2]})
    line = "t/part-00001.parquet: column 'volume' is double, expected int64 (as in part-00000"
    with (
        contextlib.chdir(tmp_path),
        pytest.raises(DataQualityError, match=re.escape(line)),
        sealed_dir("t", "features@x") as out,
    ):
        write_parquet(out / "part-00000.parquet", frame)
        write_parquet(out / "part-00001.parquet", frame.astype({"volume": "float64"}))


def test_the_manifest_is_deterministic_and_names_no_location(work: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "markets"
    shutil.copytree(RAW, copy)
    seal(copy, "generate@markets", OBSERVABLE_SCHEMA)
    text = (copy / MANIFEST).read_text()
    assert text == (RAW / MANIFEST).read_text()
    assert str(tmp_path) not in text and "elsewhere" not in text


def test_an_unsealed_file_that_is_no_parquet_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "predictions.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataQualityError, match=r"predictions\.parquet: not a readable parquet"):
        read_parquet(path, sealed=False)


def test_a_nan_cites_the_limit_key_only_where_there_is_one() -> None:
    frame = pd.DataFrame({"sigma": [0.2, 0.3, np.nan, 0.25]})
    with pytest.raises(DataQualityError) as caught:
        check_finite(frame, ["sigma"], "data/raw/options/part-00000.parquet")
    assert str(caught.value) == (
        "data/raw/options/part-00000.parquet: column 'sigma' has NaN share 25.0000% "
        "(first at row 2), over the limit of 0.0000%"
    )
    key = "markets.features.max_nan_share"
    with pytest.raises(DataQualityError, match=re.escape(f"0.0000% ({key})")):
        check_finite(frame, ["sigma"], "f", 0.0, limit_key=key)
