"""Options: a seeded random split of the declared domain, plus a held-out band of one
coordinate that goes to test only (``region == "heldout"``) to measure extrapolation apart."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reprolab.core.config import OptionsSplitParams
from reprolab.core.paths import SPLITS


def split_options(
    contracts: pd.DataFrame, params: OptionsSplitParams, gen: np.random.Generator
) -> dict[str, pd.DataFrame]:
    """Held-out band to test; the rest split at random by the train/val/test fractions.

    ``gen`` is consumed in row order, so feeding chunks in order gives the same split as
    feeding the whole table at once.
    """
    h = params.heldout
    values = contracts[h.column].to_numpy()  # moneyness, tau (years), sigma or r
    heldout = (values >= h.low) & (values <= h.high)
    u = gen.random(len(contracts))
    part = np.where(u < params.train, 0, np.where(u < params.train + params.val, 1, 2))
    part[heldout] = 2
    out = {}
    for i, name in enumerate(SPLITS):
        frame = contracts.loc[part == i].reset_index(drop=True)
        frame["region"] = np.where(heldout[part == i], "heldout", "domain")
        out[name] = frame
    return out
