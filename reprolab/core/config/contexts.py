"""The ``contexts`` section: programs, split and augmentation, tokenizer and features."""

from __future__ import annotations

from dataclasses import dataclass

from reprolab.core.config.fields import _bounded, _fail
from reprolab.core.config.markets import SplitFractions


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
