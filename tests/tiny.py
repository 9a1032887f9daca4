"""The one tiny profile: the params every stage test and the end-to-end test run with.

``PROFILE`` overrides the repository's params.yaml so that each stage runs in seconds
instead of minutes; a test that needs something else says so with explicit overrides
(``params(...)``, ``write_params(...)``), never with a profile of its own.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

from reprolab.core.config import Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]

CONTEXTS: dict[str, Any] = {
    "generate": {"n_programs": 60},
    "features": {"vocab_size": 400, "max_prompt_tokens": 2048},
}
CET: dict[str, Any] = {
    # Widths are multiples of 64, bitsandbytes' 4-bit block: on CPUs with AVX512-BF16 its
    # inference path repacks the QLoRA probe's weights per block and fails on narrower ones.
    "model": {
        "hidden_size": 64,
        "num_layers": 1,
        "num_heads": 2,
        "num_kv_heads": 2,
        "intermediate_size": 128,
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
PROFILE: dict[str, Any] = {
    "resources": {"progress": False},
    "markets": {
        "generate": {"n_symbols": 3, "n_days": 400, "symbols_per_part": 2},
        "split": {"embargo": 21, "augment": {"copies": 1}},
        "features": {"window": 20},
    },
    "options": {
        "generate": {"n_contracts": 3000, "chunk_rows": 1000},
        "features": {"n_interior": 500, "n_terminal": 100, "n_boundary": 100},
    },
    "contexts": CONTEXTS,
    "train": {
        "mamba": {"d_model": 4, "d_state": 2, "epochs": 1, "batch_size": 256, "bootstrap": 20},
        "pinn": {
            "hidden": 8,
            "depth": 2,
            "rows_per_epoch": 512,
            "epochs_supervised": 1,
            "lr_supervised": [0.003],
            "epochs_physics": 1,
            "lr_physics": [0.001],
            "epochs_rar": 1,
            "lr_rar": [0.0001],
            "rar_candidates": 256,
            "rar_points": 32,
            "polish_iterations": 5,
            "n_val": 256,
        },
        "cet": CET,
    },
    # Models this small cannot meet the default params' goals: validate reports them without
    # failing (the data and resource gates are still asserted by the end-to-end test).
    "validate": {"strict": False, "pinn_fresh_contracts": 2000, "pinn_quantlib_contracts": 50},
    # Every benchmark figure, each measured once on a handful of inputs.
    "benchmark": {
        "rounds": 1,
        "calls": 20,
        "warmup": 5,
        "batch": 1000,
        "quantlib_options": 20,
        "mamba_windows": 64,
        "train_steps": 2,
        "scan_lengths": [16],
        "scan_repeats": 1,
        "feature_rows": 1000,
        "cet_programs": 2,
        "cet_adapter_steps": 1,
    },
}


def merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` recursively (in place; returns ``base``)."""
    for key, value in over.items():
        if isinstance(value, dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def params_dict(**over: Any) -> dict[str, Any]:
    """params.yaml with the profile, then ``over`` (by section), merged in."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    merge(data, copy.deepcopy(PROFILE))
    return merge(data, copy.deepcopy(over))


def params(**over: Any) -> Params:
    """The tiny profile as validated :class:`Params` (what a stage would load)."""
    return parse_params(params_dict(**over))


def write_params(directory: Path, **over: Any) -> None:
    """Write the tiny profile as ``directory/params.yaml``."""
    text = yaml.safe_dump(params_dict(**over), sort_keys=False)
    (Path(directory) / "params.yaml").write_text(text)


@functools.cache
def repo_params() -> Params:
    """The repository's params.yaml (the values; the schema holds none), for tests that
    take a section and change a few keys."""
    return load_params(ROOT / "params.yaml")
