"""Learning-rate schedules as a factor on the base rate, framework-free: the CET steps them
per optimizer step (torch ``LambdaLR``), the Keras guard per epoch."""

from __future__ import annotations

import math


def lr_multiplier(
    step: int, steps: int, schedule: str, warmup_steps: int, min_lr_ratio: float
) -> float:
    """The factor on a phase's learning rate at optimizer step ``step`` (0-based): a linear
    warm-up over the first ``warmup_steps``, then 1 (``constant``) or a cosine decay that
    reaches ``min_lr_ratio`` at the end of the phase (``cosine``)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, steps - 1 - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
