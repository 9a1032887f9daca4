"""Walk-forward folds: expanding training sets, embargoed, never touching their test labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reprolab.core.errors import ValidationError
from reprolab.walk_forward.folds import expanding_folds


@settings(max_examples=60, deadline=None, database=None)
@given(
    n_days=st.integers(120, 900),
    n_folds=st.integers(1, 5),
    embargo=st.integers(0, 40),
    share=st.floats(0.3, 0.7),
    holes=st.integers(0, 20),
)
def test_no_fold_trains_on_or_near_its_test_labels(
    n_days: int, n_folds: int, embargo: int, share: float, holes: int
) -> None:
    calendar = pd.bdate_range("2015-01-01", periods=n_days).to_numpy().astype("datetime64[D]")
    calendar = np.delete(calendar, np.arange(holes) * 7 % n_days)  # gaps, as between splits
    dates = np.repeat(calendar, 3)  # several symbols share each date
    days = np.unique(dates)
    assume(int(len(days) * share) > embargo)  # room for a training set (else: an error)
    folds = expanding_folds(dates, n_folds, embargo, share)
    assert len(folds) == n_folds
    previous_train = np.zeros(len(dates), dtype=bool)
    previous_end = None
    for fold in folds:
        train, test = fold.train_mask(dates), fold.test_mask(dates)
        assert train.any() and test.any() and not (train & test).any()
        # the embargo: at least `embargo` trading days between the last training label
        # and the first test label
        gap = np.searchsorted(days, fold.test_start) - np.searchsorted(days, fold.train_end)
        assert gap >= embargo + 1
        assert dates[train].max() < dates[test].min()
        assert (previous_train <= train).all()  # expanding: every fold keeps the last's rows
        if previous_end is not None:
            assert fold.test_start > previous_end  # test blocks in order, disjoint
        previous_train, previous_end = train, fold.test_end
    # the test blocks together cover the calendar after the first share, once
    covered = np.zeros(len(dates), dtype=int)
    for fold in folds:
        covered += fold.test_mask(dates)
    assert covered.max() == 1
    assert (covered[dates >= folds[0].test_start] == 1).all()


def test_too_short_a_calendar_is_one_clear_error() -> None:
    dates = pd.bdate_range("2020-01-01", periods=30).to_numpy()
    with pytest.raises(ValidationError, match="cannot hold 3 folds"):
        expanding_folds(dates, 3, embargo=61)
