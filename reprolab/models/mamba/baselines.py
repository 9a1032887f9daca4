"""The recurrent comparators' size and shape: a Keras GRU or LSTM (and the PyTorch GRU of
``torch_gru``) with the parameter count of the Mamba. As comparators they read each whole
series like the Mamba (:func:`build_recurrent_sequence`); the benchmark times the windowed
classifier (:func:`build_recurrent_classifier`). The comparators themselves live in
:mod:`reprolab.models.mamba.comparators`."""

from __future__ import annotations


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
    """Window (window, n_features) -> P(next return up) after its last day."""
    return _recurrent(kind, (window, n_features), units, seed, sequences=False)


def build_recurrent_sequence(kind: str, n_features: int, units: int, seed: int):  # -> keras.Model
    """Series (L, n_features) -> P(next return up) at every day (L, 1), causal in L."""
    return _recurrent(kind, (None, n_features), units, seed, sequences=True)


def _recurrent(kind: str, shape: tuple, units: int, seed: int, sequences: bool):
    import keras

    layer = keras.layers.GRU if kind == "gru" else keras.layers.LSTM
    inputs = keras.Input(shape)
    hidden = layer(
        units,
        return_sequences=sequences,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        recurrent_initializer=keras.initializers.Orthogonal(seed=seed + 1),
    )(inputs)
    out = keras.layers.Dense(
        1, activation="sigmoid", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2)
    )(hidden)
    return keras.Model(inputs, out, name=f"{kind}_{'sequence' if sequences else 'classifier'}")
