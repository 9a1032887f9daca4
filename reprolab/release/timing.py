"""Which metrics measure time or memory: noise to a reviewer, never a reproducibility
failure. One classifier for the pull-request report and the reproducibility check."""

from __future__ import annotations

import re

# Files that hold only speed and memory figures (dvc.yaml: `cache: false`, never hashed
# inputs of a result): the benchmark, every stage's resources, the trainers' speed files.
_TIMING_FILE = re.compile(
    r"^metrics/(benchmark\.json|resources/.+|train/[^/]+/speed\.json|walk_forward/speed\.json)$"
)
# A key whose last part carries a unit of time or memory, e.g. wall_s, step_ms, p95_us,
# seconds_per_step, rows_per_s, peak_rss_mib. Tokens, not substrings: `_share` is a result.
_TIMING_KEY = re.compile(r"(^|_)(s|ms|us|ns|seconds|mib|mb|gib|rss)(_|$)")


def is_timing(path: str, key: str = "") -> bool:
    """True when the metric ``key`` of file ``path`` (or the whole file, key empty) measures
    time or memory rather than a result."""
    path = path.replace("\\", "/").removeprefix("./")
    if _TIMING_FILE.match(path):
        return True
    leaf = key.rsplit(".", 1)[-1].lower()
    return bool(leaf) and bool(_TIMING_KEY.search(leaf))
