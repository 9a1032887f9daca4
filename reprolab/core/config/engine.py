"""The validation engine: a parsed mapping against the schema, every section and key present,
none null, each of its type and within its bounds, one line naming the key on failure."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal

from reprolab.core.config.fields import PARAMS_FILE, _fail
from reprolab.core.config.params import Params
from reprolab.core.errors import ValidationError


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _bounds_text(meta: typing.Mapping[str, Any]) -> str:
    ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " and ".join(f"{ops[k]} {meta[k]}" for k in ("ge", "gt", "le", "lt") if k in meta)


def _check_bounds(path: str, value: float, tp: Any, meta: typing.Mapping[str, Any]) -> None:
    ok = (
        ("ge" not in meta or value >= meta["ge"])
        and ("gt" not in meta or value > meta["gt"])
        and ("le" not in meta or value <= meta["le"])
        and ("lt" not in meta or value < meta["lt"])
    )
    if not ok:
        _fail(path, value, f"{_describe(tp)} {_bounds_text(meta)}")


def _coerce(path: str, value: Any, tp: Any, meta: typing.Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin is Literal:
        if value not in typing.get_args(tp):
            _fail(path, value, _describe(tp))
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(path, value, args[0], meta)
    if origin is list:
        if not isinstance(value, list):
            _fail(path, value, _describe(tp))
        if len(value) < meta.get("min_len", 0):
            _fail(path, value, f"{_describe(tp)} with at least {meta['min_len']} entries")
        (inner,) = typing.get_args(tp)
        return [_coerce(f"{path}[{i}]", v, inner, meta) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            _fail(path, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(path, value, f"an integer {_bounds_text(meta)}".strip())
        _check_bounds(path, value, tp, meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            _fail(path, value, f"a number {_bounds_text(meta)}".strip())
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            _fail(path, value, "a finite number")
        _check_bounds(path, value, tp, meta)
        return value
    if tp is str:
        if not isinstance(value, str):
            _fail(path, value, "a string")
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {path}")  # a schema bug, not user input


def _build(cls: type, data: Any, path: str) -> Any:
    if data is None:
        # `markets:` with nothing under it loads as null: the schema holds no values to use
        raise ValidationError(
            f"{PARAMS_FILE}: {path}: empty (null) section; expected its keys "
            f"{_keys_text(cls)} (copy them from the repository's params.yaml)"
        )
    if not isinstance(data, dict):
        _fail(path or "<top level>", data, "a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = f"{path}.{key}" if path else str(key)
            raise ValidationError(
                f"{PARAMS_FILE}: {where}: unknown key; expected one of "
                f"{', '.join(sorted(fields))}{hint}"
            )
    # DVC tracks only what the file says, and the schema holds no values: every key is
    # written out.
    for name in fields:
        if name not in data:
            where = f"{path}.{name}" if path else name
            what = "section" if dataclasses.is_dataclass(hints[name]) else "key"
            raise ValidationError(
                f"{PARAMS_FILE}: {where}: missing {what}; every section and key must be "
                "written out (copy it from the repository's params.yaml), since DVC tracks "
                "only the params in the file"
            )
    kwargs = {
        name: _coerce(f"{path}.{name}" if path else name, data[name], hints[name], f.metadata)
        for name, f in fields.items()
    }
    obj = cls(**kwargs)
    # A section's own consistency check (a method; Params also has a `validate` section).
    validate = getattr(type(obj), "validate", None)
    if callable(validate):
        validate(obj, path)
    return obj


def _keys_text(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def parse_params(data: Any) -> Params:
    """Validate a parsed params mapping against the schema: every section and key present,
    none null, each of its type and within its bounds."""
    return _build(Params, data, "")
