"""The ``markets`` section: generation, split and augmentation, features."""

from __future__ import annotations

from dataclasses import dataclass

from reprolab.core.config.fields import _bounded, _fail, _list


@dataclass(frozen=True)
class RegimeParams:
    """Hidden Markov regimes; entry k of every list belongs to regime k."""

    names: list[str] = _list(min_len=2)
    mu: list[float] = _list(min_len=2, ge=-0.05, le=0.05)
    phi: list[float] = _list(min_len=2, gt=-1.0, lt=1.0)
    sigma: list[float] = _list(min_len=2, gt=0.0, le=0.5)
    stay: list[float] = _list(min_len=2, gt=0.0, lt=1.0)

    def validate(self, path: str) -> None:
        n = len(self.names)
        for name in ("mu", "phi", "sigma", "stay"):
            value = getattr(self, name)
            if len(value) != n:
                _fail(f"{path}.{name}", value, f"a list of {n} values, one per regime in names")
        if len(set(self.names)) != n:
            _fail(f"{path}.names", self.names, "distinct regime names")


@dataclass(frozen=True)
class MarketsGenerateParams:
    n_symbols: int = _bounded(ge=1, le=100_000)
    n_days: int = _bounded(ge=100, le=100_000)
    start_date: str
    initial_price: float = _bounded(gt=0.0)
    symbols_per_part: int = _bounded(ge=1, le=100_000)  # symbols per parquet part
    gap_scale: float = _bounded(ge=0.0, le=5.0)
    wick_scale: float = _bounded(gt=0.0, le=5.0)
    volume_base: float = _bounded(ge=1.0e3)
    volume_vol_elasticity: float = _bounded(ge=0.0, le=5.0)
    volume_noise: float = _bounded(gt=0.0, le=5.0)
    regimes: RegimeParams

    def validate(self, path: str) -> None:
        try:
            import pandas as pd

            pd.Timestamp(self.start_date)
        except (ValueError, TypeError):
            _fail(f"{path}.start_date", self.start_date, "an ISO date such as 2010-01-04")


@dataclass(frozen=True)
class SplitFractions:
    train: float = _bounded(gt=0.0, lt=1.0)
    val: float = _bounded(gt=0.0, lt=1.0)
    test: float = _bounded(gt=0.0, lt=1.0)

    def validate(self, path: str) -> None:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-9:
            _fail(f"{path}.train+val+test", round(total, 12), "fractions that sum to 1")


@dataclass(frozen=True)
class MarketsAugmentParams:
    copies: int = _bounded(ge=0, le=100)  # 0 switches augmentation off
    jitter: float = _bounded(ge=0.0, le=2.0)
    scale_min: float = _bounded(gt=0.0, le=10.0)
    scale_max: float = _bounded(gt=0.0, le=10.0)
    warp: float = _bounded(ge=0.0, le=1.0)
    warp_knots: int = _bounded(ge=2, le=1000)

    def validate(self, path: str) -> None:
        if self.scale_min > self.scale_max:
            _fail(f"{path}.scale_min", self.scale_min, f"a value <= scale_max ({self.scale_max})")


@dataclass(frozen=True)
class MarketsSplitParams(SplitFractions):
    embargo: int = _bounded(ge=0, le=100_000)
    augment: MarketsAugmentParams


@dataclass(frozen=True)
class MarketsFeaturesParams:
    window: int = _bounded(ge=2, le=10_000)
    warmup: int = _bounded(ge=60, le=100_000)
    max_nan_share: float = _bounded(ge=0.0, le=1.0)


@dataclass(frozen=True)
class MarketsParams:
    generate: MarketsGenerateParams
    split: MarketsSplitParams
    features: MarketsFeaturesParams

    def validate(self, path: str) -> None:
        need = self.features.window + 1  # a window plus the one-step-ahead label
        if self.split.embargo < need:
            _fail(
                f"{path}.split.embargo",
                self.split.embargo,
                f"an integer >= markets.features.window + 1 = {need} "
                "(so no training window overlaps a validation or test label)",
            )
        usable = self.generate.n_days - 2 * self.split.embargo
        smallest = min(self.split.train, self.split.val, self.split.test) * usable
        if smallest < 2:
            _fail(
                f"{path}.generate.n_days",
                self.generate.n_days,
                "enough days for every split after two embargo gaps",
            )
        if self.split.train * usable < self.features.warmup + self.features.window + 1:
            _fail(
                f"{path}.generate.n_days",
                self.generate.n_days,
                "a training part longer than features.warmup + features.window + 1 days",
            )
