"""The PyTorch comparator: a GRU of the Mamba's parameter count that reads whole series.

Series (batch, days, features) -> a logit of P(next return up) at every day, causal in the
days; the loss is the binary cross-entropy over the labelled days only (a label below 0
marks burn-in, padding and days that are not targets), as the Mamba's.

Trained like the Keras models (Adam, early stopping on the validation loss, the best
epoch's weights kept) and bitwise reproducible on CPU: seeded weights, a seeded batch order,
deterministic algorithms and a fixed thread count. Its weights are written as ``.npz``
(numpy arrays by parameter name), which needs nothing but numpy to read back.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reprolab.core.io import atomic_path
from reprolab.core.seeding import int_seed, rng


def build_torch_gru(n_features: int, units: int, seed: int) -> Any:
    """Series (batch, days, n_features) -> logit of P(next return up) at every day (batch,
    days); seeded weights."""
    import torch
    from torch import nn

    class GruClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gru = nn.GRU(n_features, units, batch_first=True)
            self.head = nn.Linear(units, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.gru(x)
            return self.head(out).squeeze(-1)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int_seed(seed, "torch_gru") % 2**63)
        return GruClassifier()


@dataclass
class TorchFit:
    model: Any
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def _loss(model: Any, x: Any, y: Any) -> Any:
    """Mean binary cross-entropy over the labelled days (``y >= 0``) of the batch."""
    import torch

    keep = (y >= 0).to(torch.float32)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        model(x), (y > 0.5).to(torch.float32), reduction="none"
    )
    return (bce * keep).sum() / keep.sum().clamp(min=1.0)


def predict_proba(model: Any, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """P(up) at every day of every series of ``x`` (n, days), float64."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(torch.sigmoid(model(torch.from_numpy(x[i : i + batch_size]))).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.empty(0)


def train_torch_gru(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    units: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    patience: int,
    seed: int,
    threads: int = 2,
    lr_factor: Callable[[int], float] | None = None,
) -> TorchFit:
    """Adam on the binary cross-entropy, the rate scaled per epoch by ``lr_factor``; stops
    after ``patience`` epochs without a better validation loss and returns the best epoch's
    weights."""
    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    model = build_torch_gru(x_train.shape[2], units, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.float32))
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val.astype(np.float32))
    best, best_epoch, best_state, history = np.inf, 0, copy.deepcopy(model.state_dict()), []
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * (1.0 if lr_factor is None else lr_factor(epoch))
        model.train()
        order = rng(seed, "torch_gru", "epoch", epoch).permutation(len(xt))
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = torch.from_numpy(order[i : i + batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss = _loss(model, xt[idx], yt[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            val = float(_loss(model, xv, yv))
        history.append({"loss": total / len(order), "val_loss": val})
        if val < best:
            best, best_epoch, best_state = val, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    return TorchFit(model, best_epoch, len(history), history)


def save_torch_gru(model: Any, path: Path) -> None:
    """The weights as ``.npz`` (one array per parameter name, in name order), atomically."""
    arrays = {k: v.detach().numpy() for k, v in sorted(model.state_dict().items())}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def parameter_count(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))
