"""The ``validate`` section: every gate's bound lives in params.yaml; here its meaning."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reprolab.core.config.fields import _bounded, _goal
from reprolab.core.goals import Goal


@dataclass(frozen=True)
class _Goals:
    """Goals as ``"<= number"`` or ``">= number"`` strings, one per reported figure."""

    def validate(self, path: str) -> None:
        for f in dataclasses.fields(self):
            Goal.parse(getattr(self, f.name), f"{path}.{f.name}")


@dataclass(frozen=True)
class DataGoals(_Goals):  # every dataset, from data/split and data/features
    schema_mismatches: str = _goal(
        "parts whose columns or dtypes differ from their dataset's first part"
    )
    missing_share: str = _goal("largest NaN share of any split column (raw values)")
    split_overlaps: str = _goal(
        "keys in more than one split: market (symbol, date) rows and label dates, option "
        "contracts, context programs and templates",
    )
    augmented_outside_train: str = _goal("augmented rows in val or test")
    embargo_shortfall_days: str = _goal(
        "trading days by which a gap between market splits falls short of the embargo"
    )
    lookahead_changed_rows: str = _goal(
        "market feature rows at or before t that change when the raw rows after t are "
        "perturbed (a probe on a sample of series)",
    )


@dataclass(frozen=True)
class ResourceGoals(_Goals):  # metrics/resources/<stage>.json of every stage before validate
    stages_over_memory_budget: str = _goal(
        "stages whose peak RSS exceeded resources.memory_budget_mb (or not measured)"
    )


@dataclass(frozen=True)
class MambaGoals(_Goals):  # test split
    expected_accuracy_minus_oracle: str = _goal(
        "expected accuracy under the oracle's probabilities minus the oracle's own "
        "(a fraction: -0.001 is -0.1 point)",
    )
    margin_over_best_comparator_ci95_high: str = _goal(
        "upper end of the paired 95% interval (date blocks) of the Mamba's expected accuracy "
        "minus the best comparator's, same windows: not worse beyond noise",
    )
    walk_forward_margin_ci95_high: str = _goal(
        "the same, pooled over the walk-forward folds: the Mamba against the best other "
        "walk-forward model, same (symbol, date) rows",
    )
    models_above_oracle: str = _goal(
        "models whose accuracy beats the oracle's beyond noise (paired 95%, date blocks): a leak",
    )


@dataclass(frozen=True)
class PinnGoals(_Goals):  # in-domain test split, strike K = 1
    price_rel_l2: str = _goal("relative L2 error of the call price")
    price_max_abs_k: str = _goal("largest absolute price error, in units of K")
    price_mean_abs_k: str = _goal("mean absolute price error, in units of K")
    pde_residual_rms: str = _goal("RMS of the Black-Scholes PDE residual")
    delta_max_abs: str = _goal("largest absolute delta error")
    gamma_p95_rel: str = _goal("95th percentile of the relative gamma error")
    vega_p95_rel_atm: str = _goal("95th percentile of the relative vega error near the money")
    fresh_price_rel_l2: str = _goal(
        "relative L2 error of the call price, fresh sample over the trained box"
    )
    fresh_price_max_abs_k: str = _goal(
        "largest absolute price error in units of K, fresh sample over the box"
    )
    fresh_price_mean_abs_k: str = _goal(
        "mean absolute price error in units of K, fresh sample over the box"
    )
    put_price_rel_l2: str = _goal("relative L2 error of the put price (served by put-call parity)")
    fresh_put_price_rel_l2: str = _goal(
        "relative L2 error of the put price, fresh sample over the trained box"
    )
    put_call_parity_max_abs_k: str = _goal(
        "largest |C - P - (S - K e^-r tau)| / K of the served prices"
    )
    quantlib_max_abs_k: str = _goal(
        "largest gap between the closed form the PINN is judged by and QuantLib's "
        "AnalyticEuropeanEngine, seeded sample: the yardstick checked from outside",
    )


@dataclass(frozen=True)
class CetGoals(_Goals):  # held-out test programs
    pass_rate: str = _goal("share of held-out programs whose tests pass")
    compression: str = _goal("engineered context tokens over raw context tokens")
    margin_over_heuristic: str = _goal("pass rate minus the keyword heuristic's, same programs")
    gold_pass_rate: str = _goal("pass rate of the gold contexts: the reconstructor's own check")


@dataclass(frozen=True)
class BenchmarkGoals(_Goals):
    numpy_single_p95_us: str = _goal("p95 of one price + Greeks, numpy server")
    tf_single_p95_us: str = _goal("p95 of one price + Greeks, tf.function")
    cached_p95_us: str = _goal("p95 of a cached repeat")
    batch_prices_per_s: str = _goal("batch prices per second")
    batch_greeks_per_s: str = _goal("batch prices with Greeks per second")
    serving_rss_mib: str = _goal("peak RSS of the serving process")
    artifact_bytes: str = _goal("size of the exported pricer")
    features_rows_per_s: str = _goal("market feature rows per second")
    mamba_over_comparator_step_ratio: str = _goal("Mamba training step over the equal-size GRU's")


@dataclass(frozen=True)
class ValidateParams:
    strict: bool  # a failed gate fails the stage (false: report only)
    # The PINN's fresh seeded sample over its trained box (fresh draws, not the test split),
    # and the contracts of that sample QuantLib prices one by one as the outside check.
    pinn_fresh_contracts: int = _bounded(ge=1, le=10_000_000)
    pinn_quantlib_contracts: int = _bounded(ge=1, le=1_000_000)
    data: DataGoals
    resources: ResourceGoals
    mamba: MambaGoals
    pinn: PinnGoals
    cet: CetGoals
    benchmark: BenchmarkGoals
