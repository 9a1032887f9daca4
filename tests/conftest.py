"""Shared test set-up: the hub stays offline (the package is installed by ``make venv``); a
whole green run can record its wall time for the README."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_START = time.perf_counter()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``REPROLAB_RECORD_SUITE=1``, a whole green run records its wall time for the
    README (``python -m reprolab.release.readme``): a measured figure, never typed by hand."""
    if os.environ.get("REPROLAB_RECORD_SUITE") != "1" or exitstatus != 0:
        return
    option = session.config.option
    if option.markexpr or option.keyword or option.file_or_dir:  # a subset is not the suite
        return
    from reprolab.core.io import write_json
    from reprolab.release.readme import SUITE

    root = Path(__file__).resolve().parents[1]
    record = {
        "stage": "make test",
        "tests": session.testscollected,
        "wall_s": round(time.perf_counter() - _START, 1),
    }
    write_json(root / SUITE, record)
