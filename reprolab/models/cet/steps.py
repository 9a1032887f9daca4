"""One optimizer step of the CET (supervised, clipped, finite), its optimizer and
schedule, the trainable state a checkpoint holds, and the configured adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reprolab.core.config import CetAdapterParams, CetPhaseParams
from reprolab.models.cet.data import Data, micro_batches


def make_optimizer(model: Any, lr: float) -> Any:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def phase_scheduler(optimizer: Any, p: CetPhaseParams) -> Any:
    from reprolab.guard.common.schedule import lr_multiplier
    from reprolab.guard.torch.fit import make_scheduler

    return make_scheduler(
        optimizer,
        lambda step: lr_multiplier(step, p.steps, p.schedule, p.warmup_steps, p.min_lr_ratio),
    )


def finite_step(model: Any, optimizer: Any, clip: float) -> float:
    """Clip, check, update: a non-finite gradient raises before anything changes."""
    import torch

    from reprolab.guard.torch.fit import NonFiniteStep

    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    if not np.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteStep(f"gradient norm {norm}")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


def supervised_step(
    model: Any,
    optimizer: Any,
    data: Data,
    rows: np.ndarray,
    micro_batch: int,
    pad_id: int,
    lm: bool,
) -> dict[str, float]:
    """One optimizer step over ``rows`` (accumulated in micro-batches), token-weighted."""
    from reprolab.guard.torch.fit import NonFiniteStep
    from reprolab.models.cet.model import causal_lm_loss, collate, lm_collate

    optimizer.zero_grad(set_to_none=True)
    if lm:
        seqs = [data.prompts[i] + data.targets[i] for i in rows]
        weights = [len(s) - 1 for s in seqs]
    else:
        weights = [len(data.targets[i]) for i in rows]
    total_tokens = float(sum(weights))
    loss_sum = 0.0
    for part in micro_batches(rows, micro_batch):
        if lm:
            batch = lm_collate([data.prompts[i] + data.targets[i] for i in part], pad_id)
            tokens = sum(len(data.prompts[i]) + len(data.targets[i]) - 1 for i in part)
        else:
            batch = collate([(data.prompts[i], data.targets[i]) for i in part], pad_id)
            tokens = sum(len(data.targets[i]) for i in part)
        loss = causal_lm_loss(model, batch)
        if not bool(loss.isfinite()):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteStep(f"loss {float(loss)}")
        (loss * (tokens / total_tokens)).backward()
        loss_sum += float(loss.detach()) * tokens
    norm = finite_step(model, optimizer, clip=1.0)
    return {"loss": loss_sum / total_tokens, "grad_norm": norm}


def trainable_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def load_trainable(model: Any, state: dict[str, Any]) -> None:
    import torch

    named = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            named[k].copy_(v)


def attach_configured(
    model: Any, base_dir: Path, a: CetAdapterParams, method: str, seed: int
) -> Any:
    """``train.cet.adapter`` adapters with ``method``: QLoRA loads its 4-bit base from
    ``base_dir``; LoRA wraps ``model`` in place."""
    from reprolab.models.cet.model import attach_adapters

    return attach_adapters(
        base_dir if method == "qlora" else model,
        method=method,  # type: ignore[arg-type]
        r=a.r,
        alpha=a.alpha,
        dropout=a.dropout,
        target_modules=list(a.target_modules),
        seed=seed,
    )
