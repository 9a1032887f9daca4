"""Memory measurement: the peak RSS of a block of work, not of the whole process."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from reprolab.core.resources import own_peak_rss_bytes, reset_peak_rss, rss_bytes

MIB = 1024 * 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_peak_rss_sees_a_freed_allocation_and_restarts_after_a_reset() -> None:
    assert reset_peak_rss()
    before = rss_bytes()
    block = np.ones(200 * MIB // 8)  # 200 MiB, touched
    del block
    peak = own_peak_rss_bytes()
    assert peak is not None and peak - before >= 190 * MIB  # freed, yet seen at its peak
    assert reset_peak_rss()
    assert own_peak_rss_bytes() - rss_bytes() < 20 * MIB  # the old peak is forgotten
