"""Comparators for the direction forecast, trained and judged on exactly the same windows.

* majority class: the training up-share as a constant probability;
* persistence: tomorrow moves like today; its probability is the rule's training accuracy,
  so log loss and Brier stay finite and honest;
* scikit-learn logistic regression and a histogram gradient-boosted tree on each window's
  causal summary (:func:`window_summary`: every value at or before the window's last day);
* a Keras GRU or LSTM and a PyTorch GRU (``torch_gru``) sized to the Mamba's parameter count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression


def majority_probability(y_train: np.ndarray, n: int) -> np.ndarray:
    return np.full(n, float(np.mean(y_train)))


def persistence_probability(
    last_up_train: np.ndarray, y_train: np.ndarray, last_up_eval: np.ndarray
) -> np.ndarray:
    """P(up) = training accuracy of "same direction as the last return" when it was up."""
    hit = float(np.mean(last_up_train.astype(bool) == y_train.astype(bool)))
    return np.where(last_up_eval.astype(bool), hit, 1.0 - hit)


def window_summary(x: np.ndarray) -> np.ndarray:
    """Tabular features of each window (n, window, f) -> (n, 3 f): the last step, the mean
    of the last 5 steps and the mean of the whole window. Nothing after the window's end."""
    return np.concatenate([x[:, -1, :], x[:, -5:, :].mean(axis=1), x.mean(axis=1)], axis=1)


def fit_logistic(x_train: np.ndarray, y_train: np.ndarray, seed: int) -> LogisticRegression:
    """Logistic regression on the window summaries."""
    model = LogisticRegression(max_iter=2000, random_state=seed % (2**32))
    return model.fit(window_summary(x_train), y_train)


def fit_boosted_trees(
    x_train: np.ndarray, y_train: np.ndarray, seed: int
) -> HistGradientBoostingClassifier:
    """Histogram gradient-boosted trees on the window summaries: a fixed number of rounds
    (no internal validation split, so no training row is held back and nothing is random
    but the seeded binning)."""
    model = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.05, early_stopping=False, random_state=seed % (2**32)
    )
    return model.fit(window_summary(x_train), y_train)


def tabular_probability(model: Any, x: np.ndarray) -> np.ndarray:
    """P(up) of a fitted scikit-learn classifier on windows."""
    return model.predict_proba(window_summary(x))[:, 1].astype(np.float64)


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
