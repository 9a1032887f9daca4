"""The ``options`` section: the contract domain and sampler, split, collocation features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reprolab.core.config.fields import _bounded, _fail
from reprolab.core.config.markets import SplitFractions


@dataclass(frozen=True)
class OptionsDomain:
    moneyness_min: float = _bounded(gt=0.0)
    moneyness_max: float = _bounded(gt=0.0)
    tau_min_days: float = _bounded(gt=0.0)
    tau_max_days: float = _bounded(gt=0.0, le=36500.0)
    sigma_min: float = _bounded(gt=0.0, le=5.0)
    sigma_max: float = _bounded(gt=0.0, le=5.0)
    r_min: float = _bounded(ge=-0.1, le=1.0)
    r_max: float = _bounded(ge=-0.1, le=1.0)

    def validate(self, path: str) -> None:
        for lo, hi in (
            ("moneyness_min", "moneyness_max"),
            ("tau_min_days", "tau_max_days"),
            ("sigma_min", "sigma_max"),
            ("r_min", "r_max"),
        ):
            if getattr(self, lo) >= getattr(self, hi):
                _fail(f"{path}.{lo}", getattr(self, lo), f"a value < {hi} ({getattr(self, hi)})")


@dataclass(frozen=True)
class OptionsGenerateParams:
    n_contracts: int = _bounded(ge=100, le=100_000_000)
    sampler: Literal["sobol", "uniform"]
    strike: float = _bounded(gt=0.0)
    chunk_rows: int = _bounded(ge=1000, le=10_000_000)
    domain: OptionsDomain


@dataclass(frozen=True)
class HeldoutRegion:
    column: Literal["moneyness", "tau", "sigma", "r"]
    low: float
    high: float

    def validate(self, path: str) -> None:
        if self.low >= self.high:
            _fail(f"{path}.low", self.low, f"a value < high ({self.high})")


@dataclass(frozen=True)
class OptionsSplitParams(SplitFractions):
    train: float = _bounded(gt=0.0, lt=1.0)
    val: float = _bounded(gt=0.0, lt=1.0)
    test: float = _bounded(gt=0.0, lt=1.0)
    heldout: HeldoutRegion


@dataclass(frozen=True)
class OptionsFeaturesParams:
    n_interior: int = _bounded(ge=1, le=10_000_000)
    n_terminal: int = _bounded(ge=1, le=10_000_000)
    n_boundary: int = _bounded(ge=1, le=10_000_000)


@dataclass(frozen=True)
class OptionsParams:
    generate: OptionsGenerateParams
    split: OptionsSplitParams
    features: OptionsFeaturesParams

    def validate(self, path: str) -> None:
        d = self.generate.domain
        h = self.split.heldout
        lo, hi = {
            "moneyness": (d.moneyness_min, d.moneyness_max),
            "tau": (d.tau_min_days / 365.0, d.tau_max_days / 365.0),
            "sigma": (d.sigma_min, d.sigma_max),
            "r": (d.r_min, d.r_max),
        }[h.column]
        if not (lo < h.low and h.high <= hi):
            _fail(
                f"{path}.split.heldout",
                {"column": h.column, "low": h.low, "high": h.high},
                f"a band strictly inside the sampled {h.column} range ({lo:g}, {hi:g}] "
                "that leaves a training domain below it",
            )
