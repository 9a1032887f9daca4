"""Whole series as model input: training chunks and full-history batches, causal by layout.

A sequence model predicts at every day from the days up to it. Training cuts each series
into chunks of ``length`` days every ``stride`` days (the last chunk ends at the series' last
labelled day, so every labelled day is in one); a chunk's first ``burn_in`` days carry no
loss, so the state has warmed up wherever the loss is taken, as it has at inference, where
each series is read whole from its first complete feature row. Labels of ``-1`` mark days
with no loss; padding is appended after a series' end, where a causal model's earlier outputs
cannot see it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from reprolab.core.errors import ValidationError
from reprolab.models.mamba.data import MarketSplit, Series

NO_LABEL = -1


def _cut(series: Sequence[Series], labels: np.ndarray) -> list[tuple[int, int]]:
    """Each series' rows from its start to its last labelled row (inclusive)."""
    spans = []
    for s in series:
        labelled = np.flatnonzero(labels[s.start : s.stop] != NO_LABEL)
        if len(labelled):
            spans.append((s.start, s.start + int(labelled[-1]) + 1))
    return spans


def training_chunks(
    scaled: np.ndarray,
    series: Sequence[Series],
    labels: np.ndarray,
    length: int,
    stride: int,
    burn_in: int,
    forecast: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of shape (n_chunks, length, n_features) and (n_chunks, length).

    ``scaled`` holds every row's inputs; ``labels`` per row is 0/1 for a training target and
    ``NO_LABEL`` otherwise. A series shorter than ``length`` is one chunk padded at its end.
    With ``forecast`` (n_rows, k), per-row targets of the next-day forecasts, ``y`` is
    (n_chunks, length, 1 + k): the label, then the targets (NaN on padding).
    """
    if burn_in >= length:
        raise ValidationError(
            f"train.mamba.burn_in = {burn_in}: expected fewer than sequence_length = {length} days"
        )
    xs, ys = [], []
    for lo, hi in _cut(series, labels):
        starts = list(range(lo, max(hi - length, lo) + 1, stride))
        if starts[-1] + length < hi:  # the tail: a last chunk ending at the last labelled day
            starts.append(hi - length)
        for a in starts:
            b = min(a + length, hi)
            x = np.zeros((length, scaled.shape[1]), np.float32)
            y = np.full(length, NO_LABEL, np.int8)
            x[: b - a] = scaled[a:b]
            y[: b - a] = labels[a:b]
            # no loss while the state warms up, except at a series' very start, where the
            # model at inference has no more history either
            if a > lo:
                y[:burn_in] = NO_LABEL
            xs.append(x)
            if forecast is not None:
                f = np.full((length, forecast.shape[1]), np.nan, np.float32)
                f[: b - a] = forecast[a:b]
                y = np.concatenate([y[:, None].astype(np.float32), f], axis=1)
            ys.append(y)
    if not xs:
        raise ValidationError("sequence training: no series has a labelled day")
    return np.stack(xs), np.stack(ys)


def full_series(
    scaled: np.ndarray, series: Sequence[Series], labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every series whole, (n_series, longest, n_features), padded after its end; and the
    labels laid out the same way (``NO_LABEL`` where none or padding)."""
    longest = max((s.stop - s.start for s in series), default=0)
    x = np.zeros((len(series), longest, scaled.shape[1]), np.float32)
    y = np.full((len(series), longest), NO_LABEL, np.int8)
    for i, s in enumerate(series):
        x[i, : s.stop - s.start] = scaled[s.start : s.stop]
        if labels is not None:
            y[i, : s.stop - s.start] = labels[s.start : s.stop]
    return x, y


def positions(series: Sequence[Series], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(series index, time index) in :func:`full_series`'s layout of each table row in
    ``rows``; fails if a row lies before its series' first complete feature row."""
    starts = np.array([s.start for s in series])
    stops = np.array([s.stop for s in series])
    which = np.searchsorted(stops, rows, side="right")
    if len(rows) and (
        (which >= len(series)).any() or (rows < starts[np.minimum(which, len(series) - 1)]).any()
    ):
        raise ValidationError("sequence model: a target row lies outside its series' inputs")
    return which, rows - starts[which]


def target_labels(n_rows: int, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per table row: the label at the target rows, ``NO_LABEL`` elsewhere."""
    out = np.full(n_rows, NO_LABEL, np.int8)
    out[rows] = y
    return out


def labels_of(y: np.ndarray) -> np.ndarray:
    """The labels of a ``y`` from :func:`training_chunks`: itself, or its channel 0 when it
    also carries forecast targets."""
    return y[..., 0] if y.ndim == 3 else y


def split_inputs(split: MarketSplit, columns: Sequence[str]) -> np.ndarray:
    """Every row's scaled ``columns`` of ``split``, in that order."""
    index = [split.names.index(c) for c in columns]
    return split.scaled[:, index]


def next_day(split: MarketSplit, columns: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """Per row with a label: the next day's scaled ``columns`` (the day the label is about,
    in the same split); NaN elsewhere. Fails if a labelled row's next row is another day."""
    out = np.full((len(split.rows), len(columns)), np.nan, np.float32)
    rows = np.flatnonzero(labels != NO_LABEL)
    if len(rows):
        dates = split.rows["date"].to_numpy()
        label_dates = split.targets["label_date"].to_numpy()
        order = np.argsort(split.target_rows, kind="stable")
        expected = label_dates[order][np.searchsorted(split.target_rows[order], rows)]
        if rows[-1] + 1 >= len(dates) or (dates[rows + 1] != expected).any():
            raise ValidationError(
                "sequence training: a target's label day is not the next row of its series"
            )
        out[rows] = split_inputs(split, columns)[rows + 1]
    return out


def fit_arrays(
    train: MarketSplit,
    val: MarketSplit,
    columns: Sequence[str],
    length: int,
    stride: int,
    burn_in: int,
    forecast_columns: Sequence[str] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What every sequence model trains on: (x, y) chunks of the training series (labels at
    the training targets) and (x, y) of the validation series read whole (labels at the
    validation targets, for early stopping). With ``forecast_columns``, ``y`` also carries
    the next day's values of those columns at each training target (:func:`next_day`) and
    the validation ``y`` NaN in their place: validation scores the labels only."""
    labels = target_labels(len(train.rows), train.target_rows, train.y)
    forecast = next_day(train, forecast_columns, labels) if forecast_columns else None
    x, y = training_chunks(
        split_inputs(train, columns),
        train.target_series(),
        labels,
        length,
        stride,
        burn_in,
        forecast,
    )
    val_labels = target_labels(len(val.rows), val.target_rows, val.y)
    xv, yv = full_series(split_inputs(val, columns), val.series, val_labels)
    if forecast_columns:
        nan = np.full((*yv.shape, len(forecast_columns)), np.nan, np.float32)
        yv = np.concatenate([yv[..., None].astype(np.float32), nan], axis=-1)
    return x, y, xv, yv


def at_targets(
    predict: Callable[[np.ndarray], np.ndarray], split: MarketSplit, columns: Sequence[str]
) -> np.ndarray:
    """P(up) at each target of ``split`` (target order) from a sequence model: ``predict``
    maps whole series (n, longest, features) to P(up) at every day (n, longest)."""
    x, _ = full_series(split_inputs(split, columns), split.series)
    which, day = positions(split.series, split.target_rows)
    return np.asarray(predict(x))[which, day].astype(np.float64)
