"""Keras model files: saved atomically and byte-reproducibly, loaded with the classes registered."""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from reprolab.core.io import atomic_path

# What a .keras file carries that is not the model: the save time (metadata.json and the zip
# entries' dates). Fixed, so two trainings with the same weights give the same bytes.
_FIXED_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_FIXED_SAVE_DATE = "1980-01-01@00:00:00"


def load_keras_model(path: str | Path, compile: bool = True) -> Any:
    """Load a ``.keras`` model saved by the pipeline.

    Its custom classes must be registered first: each model's own loader imports them
    (``reprolab.models.mamba.model.load_mamba_model``, ``...pinn.model.load_pinn_model``).
    """
    import keras

    return keras.models.load_model(path, compile=compile)


def _renumber_shared_objects(node: Any, ids: dict[int, int]) -> Any:
    """Keras names an object shared by several layers (a dtype policy) by its ``id()``, a
    memory address; number them 1, 2, ... in order of appearance instead (the same sharing)."""
    if isinstance(node, dict):
        return {
            k: ids.setdefault(v, len(ids) + 1)
            if k == "shared_object_id" and isinstance(v, int)
            else _renumber_shared_objects(v, ids)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_renumber_shared_objects(v, ids) for v in node]
    return node


def save_keras_model(model: Any, path: str | Path) -> Path:
    """``model.save`` to ``path`` (a ``.keras`` file), atomically and byte-reproducibly.

    Keras stamps the save time into ``metadata.json`` and the zip entries, and memory
    addresses into ``config.json`` (``shared_object_id``); the stamps become fixed values and
    the addresses small numbers, so the file's hash depends on the model alone (what DVC
    needs to call two identical trainings identical).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".keras-save-") as tmp_dir:
        saved = Path(tmp_dir) / "model.keras"  # Keras insists on the suffix
        model.save(saved)
        with (
            zipfile.ZipFile(saved) as src,
            atomic_path(final) as tmp,
            zipfile.ZipFile(tmp, "w") as dst,
        ):
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename == "metadata.json":
                    meta = json.loads(data)
                    meta["date_saved"] = _FIXED_SAVE_DATE
                    data = json.dumps(meta, sort_keys=True).encode("utf-8")
                elif info.filename == "config.json":
                    config = _renumber_shared_objects(json.loads(data), {})
                    data = json.dumps(config).encode("utf-8")
                entry = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_DATE)
                entry.compress_type = info.compress_type
                entry.external_attr = 0o644 << 16
                dst.writestr(entry, data)
    return final
