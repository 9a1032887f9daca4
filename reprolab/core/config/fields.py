"""What the schema is built from: a field's bounds and meaning (never its value: values live
in params.yaml only), and the one-line error of a bad value."""

from __future__ import annotations

import typing
from dataclasses import field
from typing import Any

from reprolab.core.errors import ValidationError

PARAMS_FILE = "params.yaml"


def _bounded(**bounds: float) -> Any:
    """A field with numeric bounds (ge, gt, le, lt) checked on load; its value lives in
    params.yaml only."""
    return field(metadata=bounds)


def _list(**bounds: Any) -> Any:
    """A list field with a length bound (min_len) and bounds on every element."""
    return field(metadata=bounds)


def _goal(meaning: str) -> Any:
    """A goal field: what passing it says (written beside each gate); its bound lives in
    params.yaml only."""
    return field(metadata={"meaning": meaning})


def _fail(path: str, value: Any, expected: str) -> typing.NoReturn:
    raise ValidationError(f"{PARAMS_FILE}: {path} = {value!r}: expected {expected}")
