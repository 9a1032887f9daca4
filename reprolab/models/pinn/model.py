"""The PINN as a Keras model (training with its own steps), its builder, loader and export.

The function is described in :mod:`reprolab.models.pinn.maths`. This module does not import
TensorFlow at import time: the Keras classes are created on first use (``PinnPricer``
attribute access, :func:`build_pinn`, :func:`load_pinn_model`), so the numpy serving path
stays free of it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reprolab.core.config import PinnTrainParams
from reprolab.core.errors import ValidationError
from reprolab.core.io import atomic_path
from reprolab.core.seeding import int_seed

if TYPE_CHECKING:
    import keras

from reprolab.models.pinn.maths import (
    BASE_WIDTH,
    COORDS,
    DERIVATIVES,
    EXPORT_FORMAT,
    LOSS_TERMS,
    N_FEATURES,
    TAU_FLOOR,
    U_SCALE,
    coords_array,
    normalisation,
    pde_residual,
)
from reprolab.models.pinn.numpy_model import (
    PricingMethods,
)

log = logging.getLogger(__name__)


@functools.cache
def _keras_classes() -> dict[str, type]:
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="reprolab")
    class PinnPricer(PricingMethods, keras.Model):
        """v = C/K of a European call (see the module docstring); trains with its own steps.

        ``call`` takes a (batch, 4) array of (x, tau, sigma, r), or a dict whose ``"data"``
        entry is one, and returns v with shape (batch, 1). ``train_step`` takes
        ``x = {"data", optional "interior", "terminal", "boundary"}`` (each (batch, 4)) and
        ``y = {"data": (batch, 2) call_price_k and call_delta, "terminal"/"boundary":
        (batch, 1) call_price_k}``: the loss terms present are the keys present.
        """

        def __init__(
            self,
            hidden: int = 64,
            depth: int = 3,
            bounds: Mapping[str, Any] | None = None,
            loss_weights: Mapping[str, float] | None = None,
            seed: int = 0,
            tau_floor: float = TAU_FLOOR,
            base_width: float = BASE_WIDTH,
            u_scale: float = U_SCALE,
            **kwargs: Any,
        ) -> None:
            kwargs.setdefault("dtype", "float64")
            super().__init__(**kwargs)
            self.hidden = int(hidden)
            self.depth = int(depth)
            if bounds is None or loss_weights is None:
                raise ValidationError(
                    "PinnPricer: bounds and loss_weights are required (from params.yaml, or "
                    "the saved model's config)"
                )
            b = dict(bounds)
            self.bounds = {k: [float(b[k][0]), float(b[k][1])] for k in COORDS}
            self.pinn_loss_weights = {k: float(loss_weights[k]) for k in LOSS_TERMS}
            self.seed = int(seed)
            self.tau_floor = float(tau_floor)
            self.base_width = float(base_width)
            self.u_scale = float(u_scale)
            self._norm = normalisation(self.bounds)
            self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *LOSS_TERMS)}

        def build(self, input_shape: Any = None) -> None:
            sizes = [N_FEATURES, *([self.hidden] * self.depth), 1]
            self.kernels = []
            self.biases = []
            for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
                last = i == len(sizes) - 2
                init = (
                    keras.initializers.Zeros()
                    if last
                    else keras.initializers.GlorotUniform(seed=int_seed(self.seed, "pinn", i))
                )
                self.kernels.append(
                    self.add_weight(
                        shape=(n_in, n_out), initializer=init, name=f"kernel_{i}", dtype="float64"
                    )
                )
                self.biases.append(
                    self.add_weight(
                        shape=(n_out,), initializer="zeros", name=f"bias_{i}", dtype="float64"
                    )
                )
            self.built = True

        # ---------------------------------------------------------------- the function
        def price_k_tensor(self, coords: tf.Tensor) -> tf.Tensor:
            """v (batch,) for a float64 (batch, 4) tensor of raw coordinates."""
            nm = self._norm
            x, tau, sigma, r = (coords[:, i] for i in range(4))
            sq = tf.sqrt(tau + self.tau_floor)
            s = sigma * sq
            fwd = x + r * tau
            u = fwd / s
            feats = tf.stack(
                [
                    (x - nm["xc"]) / nm["xh"],
                    2.0 * sq / nm["sqrt_tau_max"] - 1.0,
                    (sigma - nm["sc"]) / nm["sh"],
                    (r - nm["rc"]) / nm["rh"],
                    2.0 * s / nm["s_max"] - 1.0,
                    tf.tanh(u / self.u_scale),
                ],
                axis=1,
            )
            h = feats
            last = len(self.kernels) - 1
            for i, (W, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
                h = tf.matmul(h, W) + b
                if i < last:
                    h = tf.tanh(h)
            n = h[:, 0]
            q = self.base_width * s
            A = (tf.exp(fwd) - 1.0) / q + n
            return tf.exp(-r * tau) * q * tf.nn.softplus(A)

        def call(self, inputs: Any) -> tf.Tensor:
            if isinstance(inputs, dict):
                inputs = inputs["data"]
            coords = tf.cast(inputs, tf.float64)
            return self.price_k_tensor(coords)[:, None]

        def derivative_tensors(
            self, coords: tf.Tensor, second: bool = True
        ) -> dict[str, tf.Tensor]:
            """v and its first derivatives (and v_xx when ``second``) by autodiff."""
            coords = tf.cast(coords, tf.float64)
            with tf.GradientTape() as outer:
                outer.watch(coords)
                with tf.GradientTape() as inner:
                    inner.watch(coords)
                    v = self.price_k_tensor(coords)
                g = inner.gradient(v, coords)
                g_x = g[:, 0]
            out = {
                "v": v,
                "v_x": g_x,
                "v_tau": g[:, 1],
                "v_sigma": g[:, 2],
                "v_r": g[:, 3],
            }
            if second:
                out["v_xx"] = outer.gradient(g_x, coords)[:, 0]
            return out

        def derivatives(
            self, x: Any, tau: Any, sigma: Any, r: Any, chunk: int = 65536
        ) -> dict[str, np.ndarray]:
            """Numpy v and its derivatives (names of :data:`DERIVATIVES`), in chunks.

            One contract goes through :attr:`_single_fn` (a fixed (1, 4) signature, XLA
            compiled once: about 0.5 ms a call on CPU instead of 0.8 ms), never ``predict``.
            """
            c = coords_array(x, tau, sigma, r)
            if len(c) == 1:
                return {k: t.numpy() for k, t in self._single_fn(tf.constant(c)).items()}
            parts = []
            for i in range(0, len(c), chunk):
                d = self._derivatives_fn(tf.constant(c[i : i + chunk]))
                parts.append({k: t.numpy() for k, t in d.items()})
            return {k: np.concatenate([p[k] for p in parts]) for k in DERIVATIVES}

        def _traced(self, name: str, rows: int | None, xla: bool) -> Callable[..., Any]:
            """``derivative_tensors`` as one tf.function per signature, built once."""
            fn = self.__dict__.get(name)
            if fn is None:
                fn = tf.function(
                    self.derivative_tensors,
                    input_signature=[tf.TensorSpec([rows, 4], tf.float64)],
                    reduce_retracing=True,
                    autograph=False,
                    jit_compile=xla,
                )
                self.__dict__[name] = fn
            return fn

        @property
        def _derivatives_fn(self) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
            # Batches of any size: a graph, not XLA (XLA would compile again for every size).
            return self._traced("_cached_derivatives_fn", None, xla=False)

        @property
        def _single_fn(self) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
            return self._traced("_cached_single_fn", 1, xla=True)

        # ---------------------------------------------------------------- training
        def loss_terms(self, x: Mapping[str, Any], y: Mapping[str, Any]) -> dict[str, tf.Tensor]:
            """The per-term mean squared errors present in the batch (see the class doc)."""
            terms: dict[str, tf.Tensor] = {}
            if "data" in x:
                data = tf.cast(x["data"], tf.float64)
                target = tf.cast(y["data"], tf.float64)
                d = self.derivative_tensors(data, second=False)
                terms["price"] = tf.reduce_mean(tf.square(d["v"] - target[:, 0]))
                delta = d["v_x"] * tf.exp(-data[:, 0])
                terms["delta"] = tf.reduce_mean(tf.square(delta - target[:, 1]))
            if "interior" in x:
                pts = tf.cast(x["interior"], tf.float64)
                di = self.derivative_tensors(pts, second=True)
                sigma, r = pts[:, 2], pts[:, 3]
                res = pde_residual(di["v"], di["v_x"], di["v_xx"], di["v_tau"], sigma, r)
                # time-weighted: R sqrt(tau) is a price error per sqrt(year)
                weighted = res * tf.sqrt(pts[:, 1] + self.tau_floor)
                terms["pde"] = tf.reduce_mean(tf.square(weighted))
            for name in ("terminal", "boundary"):
                if name in x:
                    v = self.price_k_tensor(tf.cast(x[name], tf.float64))
                    tgt = tf.reshape(tf.cast(y[name], tf.float64), [-1])
                    terms[name] = tf.reduce_mean(tf.square(v - tgt))
            return terms

        def _total(self, terms: Mapping[str, tf.Tensor]) -> tf.Tensor:
            return tf.add_n([self.pinn_loss_weights[k] * t for k, t in terms.items()])

        def _report(self, loss: tf.Tensor, terms: Mapping[str, tf.Tensor]) -> dict[str, Any]:
            self.trackers["loss"].update_state(loss)
            for k, t in terms.items():
                self.trackers[k].update_state(t)
            return {k: self.trackers[k].result() for k in ("loss", *terms)}

        def train_step(self, data: Any) -> dict[str, Any]:
            x, y = data[0], data[1]
            with tf.GradientTape() as tape:
                terms = self.loss_terms(x, y)
                loss = self._total(terms)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            return self._report(loss, terms)

        def test_step(self, data: Any) -> dict[str, Any]:
            x, y = data[0], data[1]
            terms = self.loss_terms({"data": x["data"]}, {"data": y["data"]})
            return self._report(self._total(terms), terms)

        @property
        def metrics(self) -> list[Any]:
            return list(self.trackers.values())

        def get_config(self) -> dict[str, Any]:
            return {
                "name": self.name,
                "trainable": self.trainable,
                "dtype": "float64",
                "hidden": self.hidden,
                "depth": self.depth,
                "bounds": self.bounds,
                "loss_weights": dict(self.pinn_loss_weights),
                "seed": self.seed,
                "tau_floor": self.tau_floor,
                "base_width": self.base_width,
                "u_scale": self.u_scale,
            }

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> PinnPricer:
            return cls(**config)

    return {"PinnPricer": PinnPricer}


def __getattr__(name: str) -> Any:  # PinnPricer is created (and registered) on first use
    if name == "PinnPricer":
        return _keras_classes()["PinnPricer"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_pinn(p: PinnTrainParams, bounds: Mapping[str, Any], seed: int = 0) -> keras.Model:
    """A built (weights created) :class:`PinnPricer` of ``p``'s width, depth and loss weights."""
    cls = _keras_classes()["PinnPricer"]
    model = cls(
        hidden=p.hidden,
        depth=p.depth,
        bounds=bounds,
        loss_weights=dataclasses.asdict(p.loss_weights),
        seed=seed,
    )
    model.build((None, 4))
    return model


def load_pinn_model(path: str | Path, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` file of a :class:`PinnPricer` (registers the class first)."""
    import keras

    _keras_classes()
    return keras.models.load_model(path, compile=compile)


def pinn_compile_kwargs(learning_rate: float, epsilon: float = 1e-7) -> dict[str, Any]:
    """Adam with a float learning rate (the guard halves it on NaN); no XLA (slower on CPU).

    The loss terms are tiny (price MSE ~1e-7), so a small ``epsilon`` keeps Adam's steps
    from being damped once the gradients fall near the default 1e-7.
    """
    import keras

    return {
        "optimizer": keras.optimizers.Adam(learning_rate=learning_rate, epsilon=epsilon),
        "jit_compile": False,
    }


# --------------------------------------------------------------------------- export
def export_weights(model: keras.Model, path: str | Path) -> Path:
    """Write every weight plus a JSON spec of the transforms to ``path`` (.npz), atomically."""
    spec = {
        "format": EXPORT_FORMAT,
        "inputs": list(COORDS),
        "output": "v = C/K of a call = exp(-r tau) q softplus((exp(x + r tau) - 1) / q + n), "
        "q = base_width sigma sqrt(tau + tau_floor); puts by parity",
        "features": [
            "(x - xc)/xh",
            "2 sqrt(tau + tau_floor)/sqrt(tau_max) - 1",
            "(sigma - sc)/sh",
            "(r - rc)/rh",
            "2 s/(sigma_max sqrt(tau_max)) - 1",
            "tanh(((x + r tau)/s)/u_scale)",
        ],
        "activation": "tanh",
        "n_layers": len(model.kernels),
        "hidden": model.hidden,
        "depth": model.depth,
        "bounds": model.bounds,
        "tau_floor": model.tau_floor,
        "base_width": model.base_width,
        "u_scale": model.u_scale,
    }
    payload: dict[str, np.ndarray] = {
        "spec": np.frombuffer(json.dumps(spec, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    }
    for i, (W, b) in enumerate(zip(model.kernels, model.biases, strict=True)):
        payload[f"kernel_{i}"] = np.asarray(W.numpy(), dtype=np.float64)
        payload[f"bias_{i}"] = np.asarray(b.numpy(), dtype=np.float64)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **payload)
    return path
