"""Typed schema for params.yaml, validated before any work.

Every key has a type and, where it matters, a range. Unknown keys (typos), wrong types and
out-of-range values raise :class:`ValidationError` with one line naming the key path, the
value and what was expected, e.g.::

    params.yaml: markets.generate.n_symbols = -3: expected an integer >= 1

A params file must be complete and unambiguous (:func:`load_params`): every section and key
written out, none null, no key twice, since DVC tracks only what the file says. Every size
has an upper bound, so a stray zero fails here instead of running for hours.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from reprolab.core.errors import ValidationError
from reprolab.core.goals import Goal

PARAMS_FILE = "params.yaml"


def _bounded(**bounds: float) -> Any:
    """A field with numeric bounds (ge, gt, le, lt) checked on load; its value lives in
    params.yaml only."""
    return field(metadata=bounds)


def _list(**bounds: Any) -> Any:
    """A list field with a length bound (min_len) and bounds on every element."""
    return field(metadata=bounds)


# --------------------------------------------------------------------------- resources
@dataclass(frozen=True)
class ResourcesParams:
    memory_budget_mb: int = _bounded(ge=64, le=1_048_576)  # up to 1 TiB
    progress: bool


# --------------------------------------------------------------------------- markets
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


# --------------------------------------------------------------------------- options
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


# --------------------------------------------------------------------------- contexts
@dataclass(frozen=True)
class ContextsGenerateParams:
    # about 4.5 ms of CPU and 10 KB of memory a program (measured), all held at once:
    # the bound keeps generate@contexts within about 8 minutes and 1 GB
    n_programs: int = _bounded(ge=30, le=100_000)
    min_steps: int = _bounded(ge=1, le=5)
    max_steps: int = _bounded(ge=1, le=5)
    n_tests: int = _bounded(ge=3, le=24)  # hidden unit tests per program
    distractors: int = _bounded(ge=0, le=10)  # other programs mixed into each raw context
    noise: float = _bounded(ge=0.0, le=1.0)  # share of chatter, logs and near-duplicates
    corrections: float = _bounded(ge=0.0, le=1.0)  # chance a constant is corrected later

    def validate(self, path: str) -> None:
        if self.min_steps > self.max_steps:
            _fail(f"{path}.min_steps", self.min_steps, f"a value <= max_steps ({self.max_steps})")


@dataclass(frozen=True)
class ContextsAugmentParams:
    copies: int = _bounded(ge=0, le=100)  # re-rendered raw contexts per training program
    noise: float = _bounded(ge=0.0, le=1.0)
    corrections: float = _bounded(ge=0.0, le=1.0)


@dataclass(frozen=True)
class ContextsSplitParams(SplitFractions):
    augment: ContextsAugmentParams


@dataclass(frozen=True)
class ContextsFeaturesParams:
    vocab_size: int = _bounded(ge=300, le=1_000_000)  # byte-level BPE: 256 bytes + merges
    min_frequency: int = _bounded(ge=1, le=1_000_000)
    # longer contexts fail loudly, never truncated
    max_prompt_tokens: int = _bounded(ge=8, le=131072)
    max_target_tokens: int = _bounded(ge=4, le=131072)


@dataclass(frozen=True)
class ContextsParams:
    generate: ContextsGenerateParams
    split: ContextsSplitParams
    features: ContextsFeaturesParams


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class GuardParams:
    """The training guard (reprolab/guard/keras/fit.py): what to do on OOM, NaN/Inf and signals."""

    # OOM: halve the batch down to this, then fail
    min_batch_size: int = _bounded(ge=1, le=1_000_000)
    # NaN/Inf: halve the learning rate at most k times
    max_nan_retries: int = _bounded(ge=0, le=100)


@dataclass(frozen=True)
class HmmParams:
    """The Gaussian HMM comparator: EM on the training split, the state count by BIC."""

    states: list[int] = _list(min_len=1, ge=1, le=16)  # candidates for BIC
    inits: int = _bounded(ge=1, le=100)  # EM restarts per state count, best likelihood kept
    iterations: int = _bounded(ge=1, le=100_000)  # EM iterations at most


@dataclass(frozen=True)
class MambaTrainParams:
    d_model: int = _bounded(ge=2, le=4096)
    d_state: int = _bounded(ge=1, le=1024)
    d_conv: int = _bounded(ge=1, le=64)
    expand: int = _bounded(ge=1, le=8)
    n_layers: int = _bounded(ge=1, le=64)
    # RMSNorm before each block and the head; "none" keeps each step's magnitude, which is how
    # a volatility regime shows itself (measured: docs/models.md)
    norm: Literal["none", "rms"]
    scan: Literal["auto", "loop", "materialized", "chunked", "associative"]
    chunk_size: int = _bounded(ge=1, le=4096)
    epochs: int = _bounded(ge=1, le=10_000)
    patience: int = _bounded(ge=1, le=10_000)  # early stopping on validation loss
    batch_size: int = _bounded(ge=1, le=1_000_000)
    learning_rate: float = _bounded(gt=0.0, le=1.0)
    schedule: Literal["constant", "cosine"]  # per epoch, on learning_rate
    min_lr_ratio: float = _bounded(ge=0.0, le=1.0)  # cosine: the last epoch's factor
    comparator: Literal["gru", "lstm"]
    # feature columns the Mamba reads, in order (data/features/markets/registry.json names);
    # an empty list reads every feature
    inputs: list[str] = _list()
    # the head: 0 is one sigmoid unit on the last layer; k > 0 mixes k experts, each a
    # logistic function of the day's expert_inputs (today's return), with weights the
    # Mamba's state gives every day (a learned regime filter's posterior)
    experts: int = _bounded(ge=0, le=64)
    expert_inputs: list[str] = _list(min_len=1)
    ensemble: int = _bounded(ge=1, le=16)  # Mambas trained from derived seeds, averaged
    # while training, the Mamba also forecasts these next-day inputs from its state, their
    # squared error added to the loss with this weight (0 or no columns: the labels alone)
    forecast_inputs: list[str] = _list(min_len=0)
    forecast_weight: float = _bounded(ge=0.0, le=1000.0)
    # The Mamba reads each series whole (a prediction every day); training cuts the training
    # series into chunks of sequence_length days, starting every chunk_stride days, whose
    # first burn_in days carry no loss (the state warms up, as it has at inference)
    sequence_length: int = _bounded(ge=2, le=100_000)
    burn_in: int = _bounded(ge=0, le=100_000)
    chunk_stride: int = _bounded(ge=1, le=100_000)
    hmm: HmmParams
    bootstrap: int = _bounded(ge=10, le=1_000_000)  # resamples for accuracy intervals
    per_symbol: bool  # one model per symbol, trained in a process pool
    jobs: int = _bounded(ge=1, le=1024)
    guard: GuardParams


@dataclass(frozen=True)
class PinnLossWeights:
    price: float = _bounded(ge=0.0)
    delta: float = _bounded(ge=0.0)
    pde: float = _bounded(ge=0.0)
    terminal: float = _bounded(ge=0.0)
    boundary: float = _bounded(ge=0.0)


@dataclass(frozen=True)
class PinnTrainParams:
    """Each phase runs one guarded call per learning rate in its list (a step decay)."""

    hidden: int = _bounded(ge=1, le=4096)
    depth: int = _bounded(ge=1, le=64)
    batch_size: int = _bounded(ge=1, le=1_000_000)
    rows_per_epoch: int = _bounded(ge=1, le=100_000_000)
    epochs_supervised: int = _bounded(ge=0, le=10_000)
    lr_supervised: list[float] = _list(min_len=1, gt=0.0, le=1.0)
    epochs_physics: int = _bounded(ge=0, le=10_000)
    lr_physics: list[float] = _list(min_len=1, gt=0.0, le=1.0)
    epochs_rar: int = _bounded(ge=0, le=10_000)  # per refinement round
    lr_rar: list[float] = _list(min_len=0, gt=0.0, le=1.0)  # a round each
    rar_candidates: int = _bounded(ge=1, le=10_000_000)
    rar_points: int = _bounded(ge=1, le=10_000_000)
    rar_repeat: int = _bounded(ge=1, le=1000)
    # the last step: full-batch L-BFGS on polish_rows training rows plus every terminal and
    # boundary point (0 iterations: none)
    polish_iterations: int = _bounded(ge=0, le=100_000)
    polish_rows: int = _bounded(ge=1, le=10_000_000)
    n_val: int = _bounded(ge=1, le=10_000_000)
    patience: int = _bounded(ge=1, le=10_000)
    adam_epsilon: float = _bounded(gt=0.0, le=1.0)
    schedule: Literal["constant", "cosine"]  # per epoch, within each Adam phase
    min_lr_ratio: float = _bounded(ge=0.0, le=1.0)  # cosine: the last epoch's factor
    loss_weights: PinnLossWeights
    guard: GuardParams

    def validate(self, path: str) -> None:
        if self.rar_points > self.rar_candidates:
            _fail(f"{path}.rar_points", self.rar_points, "a value <= rar_candidates")


@dataclass(frozen=True)
class CetModelParams:
    """The base causal LM built locally from a config (when ``base_model`` is empty)."""

    arch: Literal["qwen2", "llama"]
    hidden_size: int = _bounded(ge=8, le=16384)
    num_layers: int = _bounded(ge=1, le=256)
    num_heads: int = _bounded(ge=1, le=256)
    num_kv_heads: int = _bounded(ge=1, le=256)
    intermediate_size: int = _bounded(ge=8, le=65536)
    max_positions: int = _bounded(ge=64, le=131072)

    def validate(self, path: str) -> None:
        if self.hidden_size % self.num_heads:
            _fail(f"{path}.hidden_size", self.hidden_size, "a multiple of num_heads")
        if self.num_heads % self.num_kv_heads:
            _fail(f"{path}.num_kv_heads", self.num_kv_heads, "a divisor of num_heads")


@dataclass(frozen=True)
class CetAdapterParams:
    method: Literal["lora", "qlora"]  # qlora: 4-bit NF4 base (bitsandbytes)
    r: int = _bounded(ge=1, le=1024)
    alpha: float = _bounded(gt=0.0)
    dropout: float = _bounded(ge=0.0, lt=1.0)
    target_modules: list[str] = _list(min_len=1)


@dataclass(frozen=True)
class CetPhaseParams:
    steps: int = _bounded(ge=0, le=10_000_000)
    batch_size: int = _bounded(ge=1, le=65536)
    learning_rate: float = _bounded(gt=0.0, le=1.0)  # the peak, under a schedule
    schedule: Literal["constant", "cosine"]  # after the warm-up
    warmup_steps: int = _bounded(ge=0, le=10_000_000)  # linear warm-up from lr/warmup
    min_lr_ratio: float = _bounded(ge=0.0, le=1.0)  # where the cosine ends

    def validate(self, path: str) -> None:
        if self.warmup_steps > self.steps:
            _fail(f"{path}.warmup_steps", self.warmup_steps, f"<= steps = {self.steps}")


@dataclass(frozen=True)
class CetScstParams(CetPhaseParams):
    steps: int = _bounded(ge=0, le=10_000_000)
    batch_size: int = _bounded(ge=1, le=65536)
    learning_rate: float = _bounded(gt=0.0, le=1.0)
    temperature: float = _bounded(gt=0.0, le=10.0)
    top_p: float = _bounded(gt=0.0, le=1.0)
    kl_coef: float = _bounded(ge=0.0)  # penalty towards the base (adapters disabled)
    grad_clip: float = _bounded(gt=0.0)
    val_every: int = _bounded(ge=1, le=10_000_000)  # steps between validation pass-rate checks
    # validation programs per check (a fixed subset)
    val_programs: int = _bounded(ge=1, le=100_000)
    rollback_floor: float = _bounded(ge=0.0, le=1.0)  # roll back below this pass rate
    rollback_margin: float = _bounded(ge=0.0, le=1.0)  # ... or this far below the best
    rollback_lr_factor: float = _bounded(gt=0.0, lt=1.0)
    max_rollbacks: int = _bounded(ge=0, le=1000)  # then SCST stops at the last good checkpoint


@dataclass(frozen=True)
class CetTrainParams:
    """Phase 1 pre-trains the base (full parameters), 2 fine-tunes adapters, 3 runs SCST."""

    base_model: str  # empty: build from ``model``; else a hub id or a local directory
    model: CetModelParams
    adapter: CetAdapterParams
    # Warm-up and cosine let a higher peak work (measured: see the README, train@cet).
    pretrain: CetPhaseParams
    sft: CetPhaseParams
    scst: CetScstParams
    # A line with a label is drawn into pretrain/SFT batches this many times as often as a
    # line without one (noise, other programs): most lines are easy noise.
    label_weight: float = _bounded(ge=1.0, le=1000.0)
    # ... and a line naming another program (the hard negatives) this many times as often.
    other_program_weight: float = _bounded(ge=1.0, le=1000.0)
    max_new_tokens: int = _bounded(ge=1, le=4096)  # per line label
    eval_batch_size: int = _bounded(ge=1, le=65536)  # lines per greedy batch
    checkpoint_every: int = _bounded(ge=1, le=10_000_000)  # optimizer steps between checkpoints
    threads: int = _bounded(ge=1, le=1024)  # torch threads; fixed so results are bitwise equal
    reconstruct_workers: int = _bounded(ge=1, le=64)
    qlora_probe_steps: int = _bounded(ge=0, le=1000)  # steps timed for the LoRA/QLoRA report
    distributed: Literal["none", "ddp"]  # ddp: SFT over nproc gloo/nccl processes
    nproc: int = _bounded(ge=1, le=1024)
    guard: GuardParams

    def validate(self, path: str) -> None:
        if self.distributed == "ddp" and self.sft.batch_size < self.nproc:
            _fail(
                f"{path}.sft.batch_size",
                self.sft.batch_size,
                f"at least one row per ddp process (>= nproc = {self.nproc})",
            )


@dataclass(frozen=True)
class TrainParams:
    mamba: MambaTrainParams
    pinn: PinnTrainParams
    cet: CetTrainParams


@dataclass(frozen=True)
class WalkForwardParams:
    """Expanding-window folds for the Mamba and the best comparator (walk_forward stage)."""

    folds: int = _bounded(ge=1, le=20)  # each trains train.mamba's configuration as is
    min_train_share: float = _bounded(gt=0.0, lt=1.0)  # calendar before the first test
    val_share: float = _bounded(gt=0.0, lt=0.5)  # of each fold's training calendar


# --------------------------------------------------------------------------- validate
@dataclass(frozen=True)
class _Goals:
    """Goals as ``"<= number"`` or ``">= number"`` strings, one per reported figure."""

    def validate(self, path: str) -> None:
        for f in dataclasses.fields(self):
            Goal.parse(getattr(self, f.name), f"{path}.{f.name}")


def _goal(meaning: str) -> Any:
    """A goal field: what passing it says (written beside each gate); its bound lives in
    params.yaml only."""
    return field(metadata={"meaning": meaning})


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


# --------------------------------------------------------------------------- validation
def _fail(path: str, value: Any, expected: str) -> typing.NoReturn:
    raise ValidationError(f"{PARAMS_FILE}: {path} = {value!r}: expected {expected}")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _bounds_text(meta: typing.Mapping[str, Any]) -> str:
    ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " and ".join(f"{ops[k]} {meta[k]}" for k in ("ge", "gt", "le", "lt") if k in meta)


def _check_bounds(path: str, value: float, tp: Any, meta: typing.Mapping[str, Any]) -> None:
    ok = (
        ("ge" not in meta or value >= meta["ge"])
        and ("gt" not in meta or value > meta["gt"])
        and ("le" not in meta or value <= meta["le"])
        and ("lt" not in meta or value < meta["lt"])
    )
    if not ok:
        _fail(path, value, f"{_describe(tp)} {_bounds_text(meta)}")


def _coerce(path: str, value: Any, tp: Any, meta: typing.Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin is Literal:
        if value not in typing.get_args(tp):
            _fail(path, value, _describe(tp))
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(path, value, args[0], meta)
    if origin is list:
        if not isinstance(value, list):
            _fail(path, value, _describe(tp))
        if len(value) < meta.get("min_len", 0):
            _fail(path, value, f"{_describe(tp)} with at least {meta['min_len']} entries")
        (inner,) = typing.get_args(tp)
        return [_coerce(f"{path}[{i}]", v, inner, meta) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            _fail(path, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(path, value, f"an integer {_bounds_text(meta)}".strip())
        _check_bounds(path, value, tp, meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(path, value, f"a number {_bounds_text(meta)}".strip())
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            _fail(path, value, "a finite number")
        _check_bounds(path, value, tp, meta)
        return value
    if tp is str:
        if not isinstance(value, str):
            _fail(path, value, "a string")
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {path}")  # a schema bug, not user input


def _build(cls: type, data: Any, path: str) -> Any:
    if data is None:
        # `markets:` with nothing under it loads as null: the schema holds no values to use
        raise ValidationError(
            f"{PARAMS_FILE}: {path}: empty (null) section; expected its keys "
            f"{_keys_text(cls)} (copy them from the repository's params.yaml)"
        )
    if not isinstance(data, dict):
        _fail(path or "<top level>", data, "a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = f"{path}.{key}" if path else str(key)
            raise ValidationError(
                f"{PARAMS_FILE}: {where}: unknown key; expected one of "
                f"{', '.join(sorted(fields))}{hint}"
            )
    # DVC tracks only what the file says, and the schema holds no values: every key is
    # written out.
    for name in fields:
        if name not in data:
            where = f"{path}.{name}" if path else name
            what = "section" if dataclasses.is_dataclass(hints[name]) else "key"
            raise ValidationError(
                f"{PARAMS_FILE}: {where}: missing {what}; every section and key must be "
                "written out (copy it from the repository's params.yaml), since DVC tracks "
                "only the params in the file"
            )
    kwargs = {
        name: _coerce(f"{path}.{name}" if path else name, data[name], hints[name], f.metadata)
        for name, f in fields.items()
    }
    obj = cls(**kwargs)
    # A section's own consistency check (a method; Params also has a `validate` section).
    validate = getattr(type(obj), "validate", None)
    if callable(validate):
        validate(obj, path)
    return obj


def _keys_text(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def parse_params(data: Any) -> Params:
    """Validate a parsed params mapping against the schema: every section and key present,
    none null, each of its type and within its bounds."""
    return _build(Params, data, "")


def _duplicate_keys(node: yaml.Node, path: str, source: str) -> None:
    """Raise on a key given twice in one mapping (YAML loaders silently keep the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ValidationError(
                    f"{source}: duplicate key '{where}' at lines {seen[key]} and {line} "
                    "(YAML would silently keep the last; delete one)"
                )
            seen[key] = line
            _duplicate_keys(value_node, where, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, f"{path}[{i}]", source)


def read_params_yaml(path: str | Path = PARAMS_FILE) -> Any:
    """The parsed params file: one ValidationError line if it is absent, not YAML, empty,
    not a mapping or has a duplicated key."""
    p = Path(path)
    if not p.exists():
        raise ValidationError(f"{p}: file not found (run from the repository root)")
    loader = yaml.SafeLoader(p.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        if node is not None:
            _duplicate_keys(node, "", str(p))
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValidationError(f"{p}: not valid YAML{where}") from None
    finally:
        loader.dispose()
    if data is None:
        raise ValidationError(
            f"{p}: the file is empty; expected the sections {_keys_text(Params)} "
            f"(restore it with `git checkout {p}`)"
        )
    if not isinstance(data, dict):
        raise ValidationError(
            f"{p}: expected a mapping of sections ({_keys_text(Params)}), "
            f"got a {type(data).__name__}"
        )
    return data


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Load and validate params.yaml, every section and key present; any problem is one
    ValidationError line."""
    return parse_params(read_params_yaml(path))


# Written by the check_params stage (dvc.yaml), which every other stage depends on so that
# DVC runs it first: a bad params.yaml then fails before DVC deletes any stage's outputs.
# Its bytes never depend on the values, so a rerun of the check reruns nothing downstream.
CHECK_MARKER = Path("metrics/params_check.txt")
CHECK_MARKER_TEXT = "params.yaml passed reprolab.core.config's checks\n"


def check_params(path: str | Path = PARAMS_FILE, marker: Path | None = None) -> int:
    """Validate the whole params file before any stage runs: one line, 0 or the
    ValidationError exit code. ``marker``: write :data:`CHECK_MARKER_TEXT` there on success."""
    try:
        load_params(path)
    except ValidationError as exc:
        print(f"error: check_params: {exc.kind}: {exc}", file=sys.stderr)
        return exc.exit_code
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(CHECK_MARKER_TEXT, encoding="utf-8")
    print(f"{path}: every section and key valid")
    return 0


def to_dict(params: Any) -> dict[str, Any]:
    """The params as plain data (for params.yaml and for writing next to outputs)."""
    return dataclasses.asdict(params)


if __name__ == "__main__":  # `python -m reprolab.core.config`: what `make repro` runs first
    raise SystemExit(check_params())
