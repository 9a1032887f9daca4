"""A stage whose input table lost, gained or spoilt a part stops before any work: one line,
the data-quality exit code, no output (issue 16, Data)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reprolab.build.markets import stage as markets
from reprolab.build.options import stage as options
from reprolab.core import paths
from reprolab.core.errors import DataQualityError
from reprolab.core.manifest import seal
from reprolab.core.resources import StageResources
from reprolab.core.tables import write_parquet
from tests import tiny

ROOT = Path(__file__).resolve().parents[2]
RAW = paths.raw("markets")
PART = RAW / "part-00001.parquet"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    tiny.write_params(root)
    with contextlib.chdir(root):
        for step in (markets.generate, options.generate):
            step(tiny.params(), StageResources("generate", root / "res", show_progress=False))
    return root


def _delete(part: Path) -> None:
    part.unlink()


def _string_close(part: Path) -> None:
    write_parquet(part, pd.read_parquet(part).astype({"close": str}))


@pytest.mark.parametrize(
    ("damage", "line"),
    [
        (
            _delete,
            "data/raw/markets: part-00001.parquet is missing (400 rows; symbol SYM0002); "
            "generate@markets wrote 2 file(s) here: rerun it",
        ),
        (
            _string_close,
            "data/raw/markets/part-00001.parquet: column 'close' is large_string, expected "
            "double (as generate@markets wrote it); rerun generate@markets",
        ),
    ],
    ids=["deleted", "string-close"],
)
def test_split_augment_stops_on_a_damaged_part(
    generated: Path, tmp_path: Path, damage: Callable[[Path], None], line: str
) -> None:
    shutil.copytree(generated, tmp_path, dirs_exist_ok=True)
    damage(tmp_path / PART)
    proc = subprocess.run(
        [sys.executable, "-m", "stages.split_augment", "markets"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.stderr.strip().splitlines() == [
        f"error: split_augment@markets: data quality: {line}"
    ]
    assert proc.returncode == DataQualityError.exit_code
    assert not (tmp_path / paths.split("markets")).exists()


def test_an_options_nan_names_the_part_and_no_markets_key(generated: Path, tmp_path: Path) -> None:
    shutil.copytree(generated, tmp_path, dirs_exist_ok=True)
    with contextlib.chdir(tmp_path):
        part = paths.raw("options") / "part-00000.parquet"
        frame = pd.read_parquet(part)
        frame.loc[7, "sigma"] = np.nan
        write_parquet(part, frame)
        seal(part.parent, "generate@options")  # as a faulty generator would have written it
        with pytest.raises(DataQualityError) as caught:
            options.split_augment(tiny.params(), StageResources("s", tmp_path / "res"))
    assert str(caught.value) == (
        "data/raw/options/part-00000.parquet: column 'sigma' has NaN share 0.1000% "
        "(first at row 7), over the limit of 0.0000%"
    )
