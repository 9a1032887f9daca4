"""The adapter probe: LoRA and QLoRA side by side on the same base (trainable share,
weight bytes, SFT step time, peak memory)."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprolab.core.resources import rss_bytes
from reprolab.models.cet.steps import (
    make_optimizer,
    supervised_step,
)

if TYPE_CHECKING:
    from reprolab.models.cet.train import CetTrainer

MIB = 1024 * 1024


def rss_mib() -> float:
    return round(rss_bytes() / MIB, 1)


def adapter_probe(trainer: CetTrainer, base: Any, base_dir: Path) -> dict[str, Any]:
    """Trainable share, weight bytes, SFT step time and peak memory of LoRA and QLoRA on the
    same base. The peak is the growth of this process's peak RSS while the method's model is
    built (a float copy of the base, or the 4-bit base loaded from ``base_dir``) and trained
    for the probe steps: model, adapters, optimizer state and activations together."""
    from reprolab.core.resources import own_peak_rss_bytes, reset_peak_rss
    from reprolab.models.cet.model import trainable_parameters

    out: dict[str, Any] = {}
    steps = trainer.t.qlora_probe_steps
    for method in ("lora", "qlora"):
        resettable = reset_peak_rss()
        rss_before = rss_bytes()
        # QLoRA loads its own 4-bit base from base_dir; LoRA trains a float copy.
        model = trainer.attach(copy.deepcopy(base) if method == "lora" else None, base_dir, method)
        peft = model.model
        trainable, total = trainable_parameters(peft)
        weight_bytes = sum(p.numel() * p.element_size() for p in peft.parameters())
        optimizer = make_optimizer(peft, trainer.t.sft.learning_rate)
        start = time.perf_counter()
        tokens = 0  # prompt and target tokens through the model (padding not counted)
        for step in range(steps):
            rows = trainer.train.batch(trainer.seed, "probe", step, trainer.t.sft.batch_size)
            tokens += sum(
                len(trainer.train.prompts[i]) + len(trainer.train.targets[i]) for i in rows
            )
            supervised_step(
                peft, optimizer, trainer.train, rows, len(rows), trainer.ids["pad"], lm=False
            )
        seconds = time.perf_counter() - start
        out[method] = {
            "method_used": model.method,
            "trainable_parameters": trainable,
            "total_parameters": total,
            "trainable_share": round(trainable / total, 6),
            "weight_bytes": int(weight_bytes),
            "probe_steps": steps,
            "seconds_per_step": round(seconds / steps, 4) if steps else None,
            "train_tokens_per_s": round(tokens / seconds) if steps else None,
        }
        peak = own_peak_rss_bytes()
        out[method]["peak_rss_growth_mib"] = (
            round((peak - rss_before) / MIB, 1) if resettable and peak is not None else None
        )
        del model, peft, optimizer
    return out


def probe_quality(probe: dict[str, Any]) -> dict[str, Any]:
    """The deterministic part of the probe (the rest is timing: speed.json)."""
    keep = ("method_used", "trainable_parameters", "total_parameters", "trainable_share")
    return {m: {k: v[k] for k in keep} for m, v in probe.items()}
