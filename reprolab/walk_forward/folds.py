"""Expanding-window walk-forward folds over a trading calendar, with an embargo.

Fold k tests on the k-th of ``n_folds`` consecutive blocks of label dates after the first
``min_train_share`` of the calendar, and trains on every window whose label date comes at
least ``embargo + 1`` trading days before the block starts: the training sets grow fold by
fold, no training label falls in or after the test block, and the embargo keeps the
training windows' labels (and, with ``embargo >= window``, their inputs) apart from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reprolab.core.errors import ValidationError


@dataclass(frozen=True)
class Fold:
    index: int
    train_end: np.datetime64  # last label date a training window may have
    test_start: np.datetime64  # first and last label date of the test block
    test_end: np.datetime64

    def train_mask(self, label_dates: np.ndarray) -> np.ndarray:
        return label_dates <= self.train_end

    def test_mask(self, label_dates: np.ndarray) -> np.ndarray:
        return (label_dates >= self.test_start) & (label_dates <= self.test_end)


def expanding_folds(
    label_dates: np.ndarray, n_folds: int, embargo: int, min_train_share: float = 0.5
) -> list[Fold]:
    """The folds over the trading calendar ``np.unique(label_dates)`` (see the module)."""
    calendar = np.unique(np.asarray(label_dates, dtype="datetime64[D]"))
    if n_folds < 1 or embargo < 0 or not 0 < min_train_share < 1:
        raise ValidationError(
            f"walk-forward: n_folds={n_folds} must be >= 1, embargo={embargo} >= 0 and "
            f"min_train_share={min_train_share} in (0, 1)"
        )
    first_test = int(len(calendar) * min_train_share)
    blocks = np.array_split(np.arange(first_test, len(calendar)), n_folds)
    if first_test - embargo - 1 < 0 or min(len(b) for b in blocks) == 0:
        raise ValidationError(
            f"walk-forward: {len(calendar)} trading days cannot hold {n_folds} folds with an "
            f"embargo of {embargo} days after {min_train_share:.0%} of the calendar"
        )
    return [
        Fold(
            index=k,
            train_end=calendar[block[0] - embargo - 1],
            test_start=calendar[block[0]],
            test_end=calendar[block[-1]],
        )
        for k, block in enumerate(blocks)
    ]
