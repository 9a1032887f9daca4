"""The gates of metrics/validate.json, by model and by revision.

validate.json has a section per judge (data, resources, mamba, pinn, cet), each with
``goals: {gate: {value, threshold, passed, meaning}}``. A model is judged by its own section
and by the shared ones: a model trained on data that broke a data gate is not promotable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reprolab.core.errors import DataQualityError, ValidationError
from reprolab.core.registry import GATE_SECTIONS, MODELS, SHARED_SECTIONS

SHARED = SHARED_SECTIONS  # the sections every model's promotion also needs
SECTIONS: dict[str, tuple[str, ...]] = {model: (*SHARED, model) for model in MODELS}
ORDER = GATE_SECTIONS  # validate.json's gated sections


def check_model(model: str) -> str:
    if model not in SECTIONS:
        raise ValidationError(f"unknown model {model!r}: expected one of {', '.join(SECTIONS)}")
    return model


def gates(validate: Mapping[str, Any], sections: tuple[str, ...] = ORDER) -> dict[str, Any]:
    """``{"section.gate": {value, threshold, passed, meaning}}`` in validate.json's order."""
    out = {}
    for section in sections:
        goals = validate.get(section, {}).get("goals")
        if not isinstance(goals, Mapping):
            raise DataQualityError(f"metrics/validate.json: section {section!r} has no goals")
        for name, gate in goals.items():
            out[f"{section}.{name}"] = gate
    return out


def model_gates(validate: Mapping[str, Any], model: str) -> dict[str, Any]:
    """Every gate that judges ``model``."""
    return gates(validate, SECTIONS[check_model(model)])


def failed(judged: Mapping[str, Any]) -> list[str]:
    return [name for name, gate in judged.items() if not gate.get("passed")]


def summary(validate: Mapping[str, Any] | None) -> str:
    """One line: how many gates passed, and the failed ones by name."""
    if validate is None:
        return "no metrics/validate.json"
    judged = gates(validate)
    bad = failed(judged)
    head = f"{len(judged) - len(bad)}/{len(judged)} gates passed"
    return f"{head}; failed: {', '.join(bad)}" if bad else head


def changed_state(base: Mapping[str, Any] | None, head: Mapping[str, Any] | None) -> list[str]:
    """The gates whose state (passed, failed, absent) differs between two revisions, in
    validate order (head's gates, then any the head no longer has)."""
    b = gates(base) if base is not None else {}
    h = gates(head) if head is not None else {}
    names = list(h) + [n for n in b if n not in h]

    def state(g: Mapping[str, Any] | None) -> bool | None:
        return None if g is None else bool(g.get("passed"))

    return [n for n in names if state(b.get(n)) != state(h.get(n))]


def compare(
    base: Mapping[str, Any] | None, head: Mapping[str, Any] | None
) -> list[tuple[str, Mapping[str, Any] | None, Mapping[str, Any] | None]]:
    """``(gate, base, head)`` for every gate of either revision, those whose state changed
    first, then the rest, each group in validate order."""
    b = gates(base) if base is not None else {}
    h = gates(head) if head is not None else {}
    changed = changed_state(base, head)
    rest = [n for n in list(h) + [n for n in b if n not in h] if n not in changed]
    return [(n, b.get(n), h.get(n)) for n in changed + rest]
