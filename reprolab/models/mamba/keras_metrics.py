"""Direction metrics Keras logs every epoch for train and val, and the masked loss of the
sequence model: a label below 0 marks a day with no loss and no score (burn-in, padding,
days that are not targets)."""

from __future__ import annotations

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
