"""Direction metrics Keras logs every epoch for train and val, and the masked loss of the
sequence model: a label below 0 marks a day with no loss and no score (burn-in, padding,
days that are not targets)."""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="reprolab")
class BalancedAccuracy(keras.metrics.Metric):
    """Mean of the true-positive and true-negative rates at a 0.5 threshold."""

    def __init__(self, name: str = "balanced_accuracy", threshold: float = 0.5, **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.threshold = threshold
        self.counts = self.add_variable(shape=(4,), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        raw = ops.cast(ops.reshape(y_true, (-1,)), "float32")
        keep = ops.cast(raw >= 0.0, "float32")  # a label below 0: not scored
        y = ops.cast(raw > 0.5, "float32")
        p = ops.cast(ops.cast(ops.reshape(y_pred, (-1,)), "float32") > self.threshold, "float32")
        tp = ops.sum(keep * y * p)
        fn = ops.sum(keep * y * (1.0 - p))
        tn = ops.sum(keep * (1.0 - y) * (1.0 - p))
        fp = ops.sum(keep * (1.0 - y) * p)
        self.counts.assign_add(ops.stack([tp, fn, tn, fp]))

    def result(self):
        tp, fn, tn, fp = (self.counts[i] for i in range(4))
        tpr = ops.divide_no_nan(tp, tp + fn)
        tnr = ops.divide_no_nan(tn, tn + fp)
        return 0.5 * (tpr + tnr)

    def reset_state(self) -> None:
        self.counts.assign(ops.zeros((4,)))

    def get_config(self) -> dict:
        return {**super().get_config(), "threshold": self.threshold}


def direction_compile_kwargs(learning_rate: float) -> dict:
    """Adam + binary cross-entropy, logging accuracy, balanced accuracy and AUC."""
    return {
        "optimizer": keras.optimizers.Adam(learning_rate=learning_rate),
        "loss": "binary_crossentropy",
        "metrics": [
            keras.metrics.BinaryAccuracy(name="accuracy"),
            BalancedAccuracy(),
            keras.metrics.AUC(name="auc"),
        ],
    }


@keras.saving.register_keras_serializable(package="reprolab")
class MaskedAccuracy(keras.metrics.Metric):
    """Share of scored days (label >= 0) whose direction the 0.5 threshold gets right."""

    def __init__(self, name: str = "accuracy", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.counts = self.add_variable(shape=(2,), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        raw = ops.cast(ops.reshape(y_true, (-1,)), "float32")
        keep = ops.cast(raw >= 0.0, "float32")
        p = ops.cast(ops.cast(ops.reshape(y_pred, (-1,)), "float32") > 0.5, "float32")
        hit = ops.cast(ops.equal(p, ops.cast(raw > 0.5, "float32")), "float32")
        self.counts.assign_add(ops.stack([ops.sum(keep * hit), ops.sum(keep)]))

    def result(self):
        return ops.divide_no_nan(self.counts[0], self.counts[1])

    def reset_state(self) -> None:
        self.counts.assign(ops.zeros((2,)))


@keras.saving.register_keras_serializable(package="reprolab")
class MaskedBinaryCrossentropy(keras.losses.Loss):
    """Mean binary cross-entropy over the scored days of a batch (label >= 0) only."""

    def __init__(self, name: str = "masked_binary_crossentropy", **kwargs) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        raw = ops.cast(ops.reshape(y_true, (-1,)), "float32")
        keep = ops.cast(raw >= 0.0, "float32")
        p = ops.clip(ops.cast(ops.reshape(y_pred, (-1,)), "float32"), 1e-7, 1.0 - 1e-7)
        y = ops.cast(raw > 0.5, "float32")
        bce = -(y * ops.log(p) + (1.0 - y) * ops.log(1.0 - p))
        return ops.divide_no_nan(ops.sum(keep * bce), ops.sum(keep))


def sequence_compile_kwargs(learning_rate: float) -> dict:
    """Adam + the masked cross-entropy, logging masked accuracy and balanced accuracy."""
    return {
        "optimizer": keras.optimizers.Adam(learning_rate=learning_rate),
        "loss": MaskedBinaryCrossentropy(),
        "metrics": [MaskedAccuracy(), BalancedAccuracy()],
    }


@keras.saving.register_keras_serializable(package="reprolab")
class ForecastingLoss(keras.losses.Loss):
    """The masked cross-entropy of P(up) (channel 0) plus ``weight`` times the mean squared
    error of the next-day forecasts ``y_pred[..., 1:]`` against ``y_true[..., 1:]``. A
    forecast counts only on a scored day (label >= 0) whose target is finite, so validation
    targets of NaN make the validation loss the cross-entropy alone (what early stopping
    and the best epoch are chosen on)."""

    def __init__(self, weight: float = 1.0, name: str = "forecasting_loss", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        bce = MaskedBinaryCrossentropy().call(y_true[..., 0], y_pred[..., 0])
        target = y_true[..., 1:]
        finite = ops.cast(ops.isfinite(target), "float32")
        finite = finite * ops.cast(y_true[..., :1] >= 0.0, "float32")
        target = ops.where(finite > 0, target, 0.0)
        squared = ops.square(target - y_pred[..., 1:])
        return bce + self.weight * ops.divide_no_nan(ops.sum(finite * squared), ops.sum(finite))

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight}


class _PUp(keras.metrics.Metric):
    """A direction metric of channel 0 (label, P(up)) of a forecasting model's output."""

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        super().update_state(y_true[..., 0], y_pred[..., 0], sample_weight)


class _ForecastAccuracy(_PUp, MaskedAccuracy):
    pass


class _ForecastBalancedAccuracy(_PUp, BalancedAccuracy):
    pass


def forecasting_compile_kwargs(weight: float) -> Callable[[float], dict]:
    """Compile arguments of :func:`~reprolab.models.mamba.model.build_mamba_forecasting`:
    Adam + :class:`ForecastingLoss`, logging masked and balanced accuracy of P(up)."""

    def kwargs(learning_rate: float) -> dict:
        return {
            "optimizer": keras.optimizers.Adam(learning_rate=learning_rate),
            "loss": ForecastingLoss(weight),
            "metrics": [_ForecastAccuracy(), _ForecastBalancedAccuracy()],
        }

    return kwargs
