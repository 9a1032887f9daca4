"""The whole params file: ``seed``, ``resources``, every section, ``benchmark``."""

from __future__ import annotations

from dataclasses import dataclass

from reprolab.core.config.contexts import ContextsParams
from reprolab.core.config.fields import _bounded, _fail, _list
from reprolab.core.config.gates import ValidateParams
from reprolab.core.config.markets import MarketsParams
from reprolab.core.config.options import OptionsParams
from reprolab.core.config.train import TrainParams, WalkForwardParams


@dataclass(frozen=True)
class ResourcesParams:
    memory_budget_mb: int = _bounded(ge=64, le=1_048_576)  # up to 1 TiB
    progress: bool


# --------------------------------------------------------------------------- benchmark
@dataclass(frozen=True)
class BenchmarkParams:
    """Sizes of the benchmark stage's measurements (it reads the trained models)."""

    rounds: int = _bounded(ge=1, le=100)  # single-call rounds, every path once a round
    calls: int = _bounded(ge=2, le=100_000)  # single calls a round (distinct contracts)
    warmup: int = _bounded(ge=0, le=10_000)  # untimed calls at the start of a round
    batch: int = _bounded(ge=1, le=10_000_000)  # contracts in the batch timings
    quantlib_options: int = _bounded(ge=1, le=1_000_000)  # priced one by one
    mamba_windows: int = _bounded(ge=1, le=1_000_000)  # inference windows
    train_steps: int = _bounded(ge=1, le=10_000)  # Mamba and GRU steps, in alternation
    scan_lengths: list[int] = _list(min_len=1, ge=2, le=4096)
    scan_repeats: int = _bounded(ge=1, le=100)
    feature_rows: int = _bounded(ge=100, le=50_000_000)
    cet_programs: int = _bounded(ge=1, le=100_000)  # test programs engineered end to end
    cet_adapter_steps: int = _bounded(ge=1, le=1000)  # LoRA and QLoRA steps each

    def validate(self, path: str) -> None:
        if self.warmup >= self.calls:
            _fail(f"{path}.warmup", self.warmup, f"fewer than {path}.calls ({self.calls})")


# --------------------------------------------------------------------------- top level
@dataclass(frozen=True)
class Params:
    seed: int = _bounded(ge=0, le=2**63 - 1)
    resources: ResourcesParams
    markets: MarketsParams
    options: OptionsParams
    contexts: ContextsParams
    train: TrainParams
    walk_forward: WalkForwardParams
    validate: ValidateParams
    benchmark: BenchmarkParams
