"""Group split (CET templates): a group never crosses splits; seeded; order-free."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprolab.build.contexts.split import split_groups
from reprolab.core.config import SplitFractions
from reprolab.core.errors import DataQualityError
from reprolab.core.paths import SPLITS
from tests.tiny import repo_params

groups_strategy = st.lists(st.sampled_from([f"t{i}" for i in range(40)]), min_size=3, max_size=300)


@settings(max_examples=60, deadline=None)
@given(groups=groups_strategy, seed=st.integers(0, 2**32 - 1))
def test_no_group_crosses_splits_and_every_split_is_used(groups: list[str], seed: int) -> None:
    series = pd.Series(groups)
    if series.nunique() < 3:
        return
    part = split_groups(series, repo_params().contexts.split, np.random.default_rng(seed))
    assert set(part) == set(SPLITS)
    assert (part.groupby(series).nunique() == 1).all()


@settings(max_examples=30, deadline=None)
@given(groups=groups_strategy, seed=st.integers(0, 2**32 - 1))
def test_row_order_does_not_change_the_assignment(groups: list[str], seed: int) -> None:
    series = pd.Series(groups)
    if series.nunique() < 3:
        return
    a = split_groups(series, repo_params().contexts.split, np.random.default_rng(seed))
    shuffled = series.sample(frac=1.0, random_state=1)
    b = split_groups(shuffled, repo_params().contexts.split, np.random.default_rng(seed))
    assert dict(zip(series, a, strict=True)) == dict(zip(shuffled, b, strict=True))


def test_fractions_count_groups_and_seeds_differ() -> None:
    series = pd.Series([f"t{i}" for i in range(1000)])
    part = split_groups(series, SplitFractions(0.7, 0.15, 0.15), np.random.default_rng(0))
    assert part.value_counts().to_dict() == {"train": 700, "val": 150, "test": 150}
    other = split_groups(series, SplitFractions(0.7, 0.15, 0.15), np.random.default_rng(1))
    assert not part.equals(other)


def test_too_few_groups_fail_with_a_clear_message() -> None:
    with pytest.raises(DataQualityError, match="2 distinct group"):
        split_groups(
            pd.Series(["a", "b", "a"]), repo_params().contexts.split, np.random.default_rng(0)
        )
