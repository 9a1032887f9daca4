"""Resource accounting for stages: wall/CPU time, peak RSS, rows, memory budget, progress.

Figures go to ``metrics/resources/<stage>.json``: metrics with ``cache: false`` that no
hashed output ever depends on (timings differ run to run; data must not).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil

from reprolab.core.errors import ResourceLimitError
from reprolab.core.io import write_json
from reprolab.core.paths import RESOURCES

T = TypeVar("T")
MIB = 1024 * 1024


def rss_bytes() -> int:
    """Current resident set size of this process."""
    return psutil.Process(os.getpid()).memory_info().rss


def peak_rss_bytes() -> int:
    """Peak RSS of this process and its waited-for children (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * 1024


def reset_peak_rss() -> bool:
    """Start this process's peak RSS (VmHWM) again from its current RSS, first handing freed
    heap back to the system so that it is not silently reused; False where Linux's
    ``/proc/self/clear_refs`` cannot be written (then :func:`own_peak_rss_bytes` is the
    process's lifetime peak)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def own_peak_rss_bytes() -> int | None:
    """This process's own peak RSS since start or :func:`reset_peak_rss` (None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            line = next((x for x in f if x.startswith("VmHWM:")), None)
    except OSError:
        return None
    return int(line.split()[1]) * 1024 if line else None


class MemoryBudget:
    """A ceiling on this process's memory: planned work that would cross it is refused."""

    def __init__(self, budget_mb: int, param: str = "resources.memory_budget_mb") -> None:
        self.budget = budget_mb * MIB
        self.param = param

    def headroom(self) -> int:
        return self.budget - rss_bytes()

    def check(self, need_bytes: int, what: str) -> None:
        """Raise ResourceLimitError if ``need_bytes`` more would exceed the budget."""
        in_use = rss_bytes()
        if in_use + need_bytes > self.budget:
            raise ResourceLimitError(
                f"{what} needs about {need_bytes / MIB:.0f} MiB on top of "
                f"{in_use / MIB:.0f} MiB in use, over the budget of {self.budget / MIB:.0f} MiB "
                f"({self.param}); raise the budget or make the chunks smaller"
            )

    def items_per_chunk(self, bytes_per_item: int, what: str, share: float = 0.5) -> int:
        """How many items fit in ``share`` of the remaining headroom (at least one, checked)."""
        n = int(max(self.headroom(), 0) * share) // max(bytes_per_item, 1)
        if n < 1:
            self.check(bytes_per_item, what)  # raises with the figures
        return max(n, 1)


def progress(
    iterable: Iterable[T],
    total: int | None,
    desc: str,
    unit: str = "parts",
    enabled: bool = True,
    rows: Callable[[], int] | None = None,
) -> Iterator[T]:
    """A tqdm bar over ``iterable`` that shows rows done (``rows()``) and memory in use."""
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=not enabled,
        mininterval=0.5,
        dynamic_ncols=True,
    )
    try:
        for item in iterable:
            yield item
            done = f"rows={rows():,} " if rows is not None else ""
            bar.set_postfix_str(f"{done}rss={rss_bytes() / MIB:.0f}MiB", refresh=False)
            bar.update(1)
    finally:
        bar.close()


class StageResources:
    """Measures one stage run and writes its figures atomically when it succeeds."""

    def __init__(
        self, stage: str, out_dir: str | Path = RESOURCES, show_progress: bool = True
    ) -> None:
        self.stage = stage
        self.show_progress = show_progress
        self.path = Path(out_dir) / (stage.replace("@", "_") + ".json")
        self.rows = 0
        self.extra: dict[str, Any] = {}

    def add_rows(self, n: int) -> None:
        self.rows += int(n)

    def progress(self, iterable: Iterable[T], total: int | None, desc: str = "") -> Iterator[T]:
        """A progress bar over parts of this stage's work, with rows done and memory."""
        label = f"{self.stage} {desc}".strip()
        return progress(iterable, total, label, "parts", self.show_progress, lambda: self.rows)

    def __enter__(self) -> StageResources:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()
        return self

    def figures(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._wall
        children = os.times()
        cpu = time.process_time() - self._cpu + children.children_user + children.children_system
        return {
            "stage": self.stage,
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "peak_rss_mib": round(peak_rss_bytes() / MIB, 1),
            "rows": self.rows,
            "rows_per_s": round(self.rows / wall, 1) if wall > 0 else None,
            **self.extra,
        }

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            write_json(self.path, self.figures())
