"""A streaming balanced-accuracy metric, so Keras logs it every epoch for train and val."""

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
        y = ops.cast(ops.cast(ops.reshape(y_true, (-1,)), "float32") > 0.5, "float32")
        p = ops.cast(ops.cast(ops.reshape(y_pred, (-1,)), "float32") > self.threshold, "float32")
        tp = ops.sum(y * p)
        fn = ops.sum(y * (1.0 - p))
        tn = ops.sum((1.0 - y) * (1.0 - p))
        fp = ops.sum((1.0 - y) * p)
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
