"""Tiny params shared by the tests that run stages (seconds instead of minutes)."""

from __future__ import annotations

from typing import Any

CONTEXTS: dict[str, Any] = {
    "generate": {"n_programs": 60},
    "features": {"vocab_size": 400, "max_prompt_tokens": 2048},
}
CET: dict[str, Any] = {
    "model": {
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "num_kv_heads": 1,
        "intermediate_size": 64,
        "max_positions": 2048,
    },
    "adapter": {"r": 4, "alpha": 8.0},
    # Warm-up and cosine: the resume test then also proves the scheduler state is restored.
    "pretrain": {"steps": 4, "batch_size": 4, "schedule": "cosine", "warmup_steps": 2},
    "sft": {"steps": 4, "batch_size": 4, "schedule": "cosine", "warmup_steps": 2},
    "scst": {"steps": 3, "batch_size": 2, "val_every": 1, "val_programs": 4},
    "max_new_tokens": 12,
    "checkpoint_every": 2,
    "qlora_probe_steps": 1,
}


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` recursively (in place; returns ``base``)."""
    for key, value in over.items():
        if isinstance(value, dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base
