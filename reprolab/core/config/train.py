"""The ``train`` section (the Mamba and its comparators, the PINN, the CET, the guard) and
``walk_forward``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reprolab.core.config.fields import _bounded, _fail, _list


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
