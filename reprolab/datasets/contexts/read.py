"""What the contexts dataset's readers share: where its features live and the contexts the
baselines hand the reconstructor."""

from __future__ import annotations

import pandas as pd

from reprolab.core import paths
from reprolab.core.tables import read_parquet

DATASET = "contexts"
TOKENIZER = "tokenizer"  # the tokenizer's folder under data/features/contexts


def split_file(name: str) -> str:
    return f"{name}.parquet"


def read_features(split: str) -> pd.DataFrame:
    """A tokenised split of ``data/features/contexts``."""
    return read_parquet(paths.features(DATASET) / split_file(split))


def baseline_contexts(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The context each baseline hands the reconstructor, per row."""
    from reprolab.datasets.contexts.heuristic import heuristic_context

    return {
        "gold": list(frame["gold"]),
        "raw": list(frame["raw"]),
        "heuristic": [
            heuristic_context(r, n) for r, n in zip(frame["raw"], frame["name"], strict=True)
        ],
        "none": [""] * len(frame),
    }
