"""Comparators for the direction forecast, trained and judged on exactly the same windows.

* majority class: the training up-share as a constant probability;
* persistence: tomorrow moves like today; its probability is the rule's training accuracy,
  so log loss and Brier stay finite and honest;
* logistic regression on the last step's (scaled) features;
* a GRU or LSTM sized to the Mamba's parameter count.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


def majority_probability(y_train: np.ndarray, n: int) -> np.ndarray:
    return np.full(n, float(np.mean(y_train)))


def persistence_probability(
    last_up_train: np.ndarray, y_train: np.ndarray, last_up_eval: np.ndarray
) -> np.ndarray:
    """P(up) = training accuracy of "same direction as the last return" when it was up."""
    hit = float(np.mean(last_up_train.astype(bool) == y_train.astype(bool)))
    return np.where(last_up_eval.astype(bool), hit, 1.0 - hit)


def logistic_last_step(
    x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, seed: int
) -> np.ndarray:
    """Logistic regression on the features of each window's last step."""
    model = LogisticRegression(max_iter=2000, random_state=seed % (2**32))
    model.fit(x_train[:, -1, :], y_train)
    return model.predict_proba(x_eval[:, -1, :])[:, 1]


def recurrent_params(kind: str, n_features: int, units: int) -> int:
    """Parameters of Input -> GRU/LSTM(units) -> Dense(1) in Keras 3 (GRU: reset_after)."""
    gates, bias = (3, 2 * units) if kind == "gru" else (4, units)
    return gates * (units * (n_features + units) + bias) + units + 1


def units_matching(kind: str, n_features: int, target_params: int) -> int:
    """The recurrent width whose parameter count is closest to ``target_params``."""
    return min(
        range(1, 1025), key=lambda u: abs(recurrent_params(kind, n_features, u) - target_params)
    )


def build_recurrent_classifier(
    kind: str, n_features: int, window: int, units: int, seed: int
):  # -> keras.Model (keras imported lazily: the data stages never pay for TensorFlow)
    import keras

    layer = keras.layers.GRU if kind == "gru" else keras.layers.LSTM
    inputs = keras.Input((window, n_features))
    hidden = layer(
        units,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 1),
    )(inputs)
    out = keras.layers.Dense(
        1, activation="sigmoid", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2)
    )(hidden)
    return keras.Model(inputs, out, name=f"{kind}_classifier")
