"""Contexts: a split by group (the program template), so held-out programs are new shapes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprolab.core.config import SplitFractions
from reprolab.core.errors import DataQualityError
from reprolab.core.paths import SPLITS


def split_groups(
    groups: pd.Series, fractions: SplitFractions, gen: np.random.Generator
) -> pd.Series:
    """The split of every row, assigned per group (e.g. per program template), never per row.

    The distinct groups, sorted so the input order cannot matter, are shuffled by ``gen`` and
    cut by the train/val/test fractions of their count; every split gets at least one group.
    Rows of one group therefore always share a split: held-out groups are new shapes.
    """
    distinct = np.array(sorted(groups.unique()), dtype=object)
    if len(distinct) < len(SPLITS):
        raise DataQualityError(
            f"split_groups: {len(distinct)} distinct group(s); need at least {len(SPLITS)} "
            "(one per split): generate more programs"
        )
    order = distinct[gen.permutation(len(distinct))]
    n = len(order)
    n_train = min(max(1, round(fractions.train * n)), n - 2)
    n_val = min(max(1, round(fractions.val * n)), n - n_train - 1)
    part = {g: SPLITS[0] for g in order[:n_train]}
    part.update({g: SPLITS[1] for g in order[n_train : n_train + n_val]})
    part.update({g: SPLITS[2] for g in order[n_train + n_val :]})
    return groups.map(part).rename("split")
