"""The Mamba forecaster one day at a time: a numpy recurrence over the saved Keras weights.

A whole-series pass and this step path compute the same function: each day costs one
recurrent step per layer (the causal convolution's last ``d_conv - 1`` inputs and the SSM
state ``h`` of shape (d_inner, N) are carried), so a forecaster that keeps each symbol's
state pays for one new day, not for its history. Computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _rms(x: np.ndarray, scale: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


@dataclass
class _Block:
    in_proj: np.ndarray
    conv_kernel: np.ndarray  # (d_conv, d_inner): kernel[-1] multiplies today's input
    conv_bias: np.ndarray
    x_proj: np.ndarray
    dt_proj: np.ndarray
    dt_bias: np.ndarray
    A: np.ndarray  # (d_inner, N), negative
    D: np.ndarray
    out_proj: np.ndarray
    dt_rank: int
    d_state: int
    norm: tuple[np.ndarray, float] | None


@dataclass
class StepState:
    """Per series (the batch axis): each layer's last conv inputs and SSM state."""

    conv: list[np.ndarray] = field(default_factory=list)  # (batch, d_conv - 1, d_inner)
    h: list[np.ndarray] = field(default_factory=list)  # (batch, d_inner, N)


class MambaStepper:
    """Built from a Keras model of :func:`~reprolab.models.mamba.model.build_mamba_sequence`."""

    def __init__(self, model: Any) -> None:
        def weights(layer: Any) -> dict[str, np.ndarray]:
            return {w.path.split("/")[-1]: np.asarray(w.numpy(), np.float64) for w in layer.weights}

        embed = weights(model.get_layer("embed"))
        self.embed = (embed["kernel"], embed["bias"])
        head_layer = model.get_layer("head")
        head = weights(head_layer)
        self.mixture = "gate_kernel" in head
        if self.mixture:
            self.gate = (head["gate_kernel"], head["gate_bias"])
            self.expert = (head["expert_kernel"], head["expert_bias"])
            self.expert_index = list(head_layer.expert_index)
        else:
            self.head = (head["kernel"][:, 0], float(head["bias"][0]))
        names = {layer.name for layer in model.layers}
        self.blocks: list[_Block] = []
        i = 0
        while f"mamba_{i}" in names:
            layer = model.get_layer(f"mamba_{i}")
            w = weights(layer)
            norm = None
            if f"norm_{i}" in names:
                n = model.get_layer(f"norm_{i}")
                norm = (weights(n)["scale"], n.epsilon)
            self.blocks.append(
                _Block(
                    w["in_proj"],
                    w["conv_kernel"],
                    w["conv_bias"],
                    w["x_proj"],
                    w["dt_proj"],
                    w["dt_bias"],
                    -np.exp(w["A_log"]),
                    w["D"],
                    w["out_proj"],
                    layer.dt_rank,
                    layer.d_state,
                    norm,
                )
            )
            i += 1
        self.final_norm = None
        if "final_norm" in names:
            n = model.get_layer("final_norm")
            self.final_norm = (weights(n)["scale"], n.epsilon)

    def initial_state(self, batch: int) -> StepState:
        state = StepState()
        for b in self.blocks:
            d_conv, d_inner = b.conv_kernel.shape
            state.conv.append(np.zeros((batch, d_conv - 1, d_inner)))
            state.h.append(np.zeros((batch, d_inner, b.A.shape[1])))
        return state

    def step(self, state: StepState, inputs: np.ndarray) -> np.ndarray:
        """One new day per series: ``inputs`` (batch, n_features) scaled features; updates
        ``state`` in place and returns P(next return up) per series."""
        inputs = np.asarray(inputs, np.float64)
        x = inputs @ self.embed[0] + self.embed[1]
        for i, b in enumerate(self.blocks):
            h_in = x if b.norm is None else _rms(x, b.norm[0], b.norm[1])
            xz = h_in @ b.in_proj
            d_inner = b.conv_kernel.shape[1]
            xi, z = xz[:, :d_inner], xz[:, d_inner:]
            window = np.concatenate([state.conv[i], xi[:, None, :]], axis=1)
            state.conv[i] = window[:, 1:]
            u = _silu(b.conv_bias + np.einsum("bkd,kd->bd", window, b.conv_kernel))
            x_dbl = u @ b.x_proj
            r, n = b.dt_rank, b.d_state
            dt = _softplus(x_dbl[:, :r] @ b.dt_proj + b.dt_bias)
            bmat, cmat = x_dbl[:, r : r + n], x_dbl[:, r + n :]
            h = np.exp(dt[:, :, None] * b.A) * state.h[i] + (dt * u)[:, :, None] * bmat[:, None]
            state.h[i] = h
            y = np.einsum("bdn,bn->bd", h, cmat) + b.D * u
            x = x + (y * _silu(z)) @ b.out_proj
        if self.final_norm is not None:
            x = _rms(x, *self.final_norm)
        if not self.mixture:
            return _sigmoid(x @ self.head[0] + self.head[1])
        g = x @ self.gate[0] + self.gate[1]
        g = np.exp(g - g.max(axis=-1, keepdims=True))
        g /= g.sum(axis=-1, keepdims=True)
        expert = _sigmoid(inputs[:, self.expert_index] @ self.expert[0] + self.expert[1])
        return (g * expert).sum(axis=-1)

    def run(self, series: np.ndarray) -> np.ndarray:
        """(batch, L, n_features) -> (batch, L): every day through :meth:`step`."""
        state = self.initial_state(series.shape[0])
        return np.stack([self.step(state, series[:, t]) for t in range(series.shape[1])], axis=1)
