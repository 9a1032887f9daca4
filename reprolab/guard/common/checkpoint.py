"""Checkpoints of every model: one format family, one corrupt-file policy, one fingerprint rule.

* **Format**: one file per checkpoint, written atomically, carrying a header
  ``{"format": FORMAT, "fingerprint": ...}`` beside its payload. Keras and the PINN store
  numpy arrays in an ``.npz`` (the header as JSON bytes under ``meta``); the CET stores torch
  state with ``torch.save`` (the header under ``"meta"``).
* **Policy**: a checkpoint is a cache, never a result. One that is unreadable, of another
  format or made under another fingerprint is discarded with one line saying why, and
  training restarts from scratch; it never raises and is never half-used.
* **Fingerprint**: :func:`stage_fingerprint` hashes everything that determines a training
  stage's result: its own and its upstream params, the bytes of its input data and the code
  it imports (the same import closure ``dvc.yaml`` must declare). Change any of them and an
  interrupted run starts over instead of resuming weights trained on something else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from reprolab.core import paths
from reprolab.core.config import Params, to_dict
from reprolab.core.errors import CheckpointError
from reprolab.core.io import atomic_path
from reprolab.guard.common.deps import code_hash

FORMAT = 2
Event = Callable[[str], None]


# --------------------------------------------------------------------------- fingerprint
def text_fingerprint(text: str) -> str:
    """sha256 of ``text``: the key for a set-up already written out as canonical text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def files_hash(paths: Iterable[Path]) -> str:
    """sha256 over the relative names and bytes of every file under ``paths``, in sorted order."""
    digest = hashlib.sha256()
    for top in paths:
        top = Path(top)
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for f in files:
            digest.update(f.as_posix().encode() + b"\0")
            with open(f, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    digest.update(block)
            digest.update(b"\0")
    return digest.hexdigest()


def stage_fingerprint(
    params: Params,
    *,
    model: str,
    dataset: str,
    inputs: Iterable[Path],
    modules: Iterable[str],
    sections: Mapping[str, Any] | None = None,
) -> str:
    """A fingerprint of a training run: seed, the dataset's and the model's params sections
    (and any further ``sections``, by name), the bytes of the files under ``inputs`` and the
    code of ``modules`` (import closure)."""
    root = Path(__file__).resolve().parents[3]
    parts = {
        "params": {
            "seed": params.seed,
            dataset: to_dict(getattr(params, dataset)),
            "train": to_dict(getattr(params.train, model)),
            **{name: to_dict(value) for name, value in sorted((sections or {}).items())},
        },
        "data": files_hash(inputs),
        "code": code_hash(modules, root),
    }
    return text_fingerprint(json.dumps(parts, sort_keys=True))


def train_fingerprint(params: Params, model: str) -> str:
    """The fingerprint of ``train@<model>`` (:func:`stage_fingerprint` of its features and
    its stage module, as run from the repository root)."""
    from reprolab.core.stage import stage_module

    dataset = paths.DATASET_OF[model]
    return stage_fingerprint(
        params,
        model=model,
        dataset=dataset,
        inputs=[paths.features(dataset)],
        modules=["stages.train", stage_module("train", model)],
    )


# --------------------------------------------------------------------------- the one rule
def accepted(path: Path, header: Any, fingerprint: str, event: Event) -> bool:
    """Whether a checkpoint whose header is ``header`` may be resumed; if not, say why."""
    if not isinstance(header, Mapping) or header.get("format") != FORMAT:
        event(f"discarded checkpoint {path}: another checkpoint format; training from scratch")
        return False
    if header.get("fingerprint") != fingerprint:
        event(
            f"discarded checkpoint {path}: made for a different set-up (params, input data or "
            "code changed); training from scratch"
        )
        return False
    return True


def _unreadable(path: Path, exc: BaseException, event: Event) -> None:
    first = str(exc).splitlines()[0] if str(exc) else ""
    event(
        f"discarded checkpoint {path}: unreadable ({type(exc).__name__}: {first}); "
        "training from scratch"
    )


def discard(path: Path) -> None:
    """Remove a checkpoint and any temporary file a killed write left beside it."""
    path.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------- npz (Keras, PINN)
def save_npz(
    path: Path, fingerprint: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> None:
    """Write ``meta`` (JSON) and ``arrays`` atomically under the header."""
    header = {"format": FORMAT, "fingerprint": fingerprint, **meta}
    payload = {"meta": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}
    payload.update(arrays)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **payload)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write the checkpoint ({exc.strerror})") from exc


def _load(path: Path, fingerprint: str, event: Event, read: Callable[[Path], Any]) -> Any:
    """``read(path) -> (header, payload)`` under the one policy: the payload, or None when
    the file is missing, unreadable or not accepted (it is then removed)."""
    if not path.exists():
        return None
    try:
        header, payload = read(path)
    except Exception as exc:  # any failure to read it means the file is damaged
        _unreadable(path, exc, event)
        discard(path)
        return None
    if not accepted(path, header, fingerprint, event):
        discard(path)
        return None
    return payload


def _read_npz(path: Path) -> tuple[Any, tuple[dict[str, Any], dict[str, np.ndarray]]]:
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(bytes(z["meta"]).decode("utf-8"))
        arrays = {k: z[k] for k in sorted(z.files) if k != "meta"}
    return header, (header, arrays)


def load_npz(
    path: Path, fingerprint: str, event: Event
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """``(meta, arrays)`` of the checkpoint at ``path``, or None when it is missing or
    discarded (the file is then removed and ``event`` says why)."""
    return _load(path, fingerprint, event, _read_npz)


# --------------------------------------------------------------------------- torch (CET)
def save_torch(path: Path, fingerprint: str, payload: Mapping[str, Any]) -> None:
    """``torch.save`` ``payload`` atomically under the header."""
    import torch

    with atomic_path(path) as tmp:
        torch.save({"meta": {"format": FORMAT, "fingerprint": fingerprint}, **payload}, tmp)


def _read_torch(path: Path) -> tuple[Any, dict[str, Any]]:
    import torch

    payload = torch.load(path, weights_only=False)
    return (payload.get("meta") if isinstance(payload, dict) else None), payload


def load_torch(path: Path, fingerprint: str, event: Event) -> dict[str, Any] | None:
    """The payload saved at ``path``, or None when it is missing or discarded."""
    return _load(path, fingerprint, event, _read_torch)
