"""Reading params.yaml strictly (no duplicated key, not empty, a mapping) and loading it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from reprolab.core.config.engine import _keys_text, parse_params
from reprolab.core.config.fields import PARAMS_FILE
from reprolab.core.config.params import Params
from reprolab.core.errors import ValidationError


def _duplicate_keys(node: yaml.Node, path: str, source: str) -> None:
    """Raise on a key given twice in one mapping (YAML loaders silently keep the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ValidationError(
                    f"{source}: duplicate key '{where}' at lines {seen[key]} and {line} "
                    "(YAML would silently keep the last; delete one)"
                )
            seen[key] = line
            _duplicate_keys(value_node, where, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, f"{path}[{i}]", source)


def read_params_yaml(path: str | Path = PARAMS_FILE) -> Any:
    """The parsed params file: one ValidationError line if it is absent, not YAML, empty,
    not a mapping or has a duplicated key."""
    p = Path(path)
    if not p.exists():
        raise ValidationError(f"{p}: file not found (run from the repository root)")
    loader = yaml.SafeLoader(p.read_text(encoding="utf-8"))
    try:
        node = loader.get_single_node()
        if node is not None:
            _duplicate_keys(node, "", str(p))
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValidationError(f"{p}: not valid YAML{where}") from None
    finally:
        loader.dispose()
    if data is None:
        raise ValidationError(
            f"{p}: the file is empty; expected the sections {_keys_text(Params)} "
            f"(restore it with `git checkout {p}`)"
        )
    if not isinstance(data, dict):
        raise ValidationError(
            f"{p}: expected a mapping of sections ({_keys_text(Params)}), "
            f"got a {type(data).__name__}"
        )
    return data


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Load and validate params.yaml, every section and key present; any problem is one
    ValidationError line."""
    return parse_params(read_params_yaml(path))


def to_dict(params: Any) -> dict[str, Any]:
    """The params as plain data (for params.yaml and for writing next to outputs)."""
    return dataclasses.asdict(params)
