"""Seeded small programs: steps drawn from the grammar, inputs chosen so every step matters,
names, templates and the gold context."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reprolab.core.errors import DataQualityError, ValidationError
from reprolab.datasets.contexts.grammar import (
    APPLY,
    INPUT_TYPES,
    KINDS_BY_TYPE,
    MAX_STEPS,
    STEP_SPECS,
    Step,
    freeze,
    requirement_line,
    run_steps,
)


# ------------------------------------------------------------------------------- programs
@dataclass(frozen=True)
class Program:
    """A generated program: typed steps, canonical requirements and hidden unit tests."""

    name: str
    input_type: str
    output_type: str
    steps: tuple[Step, ...]
    template: str
    requirements: tuple[str, ...]
    tests: tuple[tuple[Any, Any], ...]  # (input, expected); lists frozen as tuples

    def run(self, value: Any) -> Any:
        """The reference output for ``value``."""
        return run_steps(self.steps, value)

    def tests_json(self) -> str:
        """The tests as deterministic JSON: ``[[input, expected], ...]``."""
        return json.dumps([list(t) for t in self.tests], sort_keys=True)


def make_template(input_type: str, steps: Sequence[Step]) -> str:
    """The step-kind sequence without constants, e.g. ``list:keep_gt|sort_asc|sum``."""
    return f"{input_type}:" + "|".join(s.kind for s in steps)


def template_hash(template: str) -> str:
    """sha256 of the template lower-cased with all whitespace removed."""
    normalised = "".join(template.lower().split())
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def gold_context(program: Program) -> str:
    """The target text: canonical requirement lines in execution order."""
    return "\n".join(program.requirements)


_NAME_RE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
_VERBS = (
    "clean", "parse", "rank", "score", "merge", "tidy", "count", "build", "fetch", "check",
    "shape", "trim", "pack", "scan", "load", "map", "sift", "grade", "label", "tag", "bucket",
    "index", "fold", "render",
)  # fmt: skip
_NOUNS = (
    "scores", "ids", "names", "orders", "events", "tokens", "prices", "labels", "items",
    "records", "users", "logs", "tickets", "rows", "notes", "titles", "codes", "batches",
    "files", "votes", "readings", "entries", "tags", "slugs",
)  # fmt: skip
ALL_NAMES: tuple[str, ...] = tuple(f"{v}_{n}" for v in _VERBS for n in _NOUNS)


def pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _draw_steps(rng: np.random.Generator, input_type: str, n_steps: int) -> tuple[Step, ...]:
    steps: list[Step] = []
    current = input_type
    for _ in range(n_steps):
        kinds = [k for k in KINDS_BY_TYPE[current] if not steps or k != steps[-1].kind]
        spec = STEP_SPECS[pick(rng, kinds)]
        const = pick(rng, spec.consts) if spec.consts else None
        steps.append(Step(spec.kind, int(const) if isinstance(const, int) else const))
        current = spec.out_type
    return tuple(steps)


_WORD_LETTERS = "aeinorstlmdu"


def _draw_text(rng: np.random.Generator) -> str:
    """2-5 mixed-case words with 0-2 spaces around them (few numpy calls: this is hot)."""
    n_words = int(rng.integers(2, 6))
    lengths = rng.integers(1, 7, size=n_words).tolist()
    codes = rng.integers(len(_WORD_LETTERS), size=sum(lengths)).tolist()
    styles = rng.random(n_words).tolist()
    left, right = rng.integers(0, 3, size=2).tolist()
    words, start = [], 0
    for length, style in zip(lengths, styles, strict=True):
        word = "".join(_WORD_LETTERS[i] for i in codes[start : start + length])
        start += length
        words.append(word.capitalize() if style < 0.3 else word.upper() if style < 0.45 else word)
    return " " * left + " ".join(words) + " " * right


def _draw_input(rng: np.random.Generator, input_type: str) -> Any:
    if input_type == "list":
        return rng.integers(-3, 16, size=int(rng.integers(4, 11))).tolist()
    return _draw_text(rng)


def _variants(steps: tuple[Step, ...]) -> list[tuple[Step, ...]]:
    """Every program with one step removed or one constant changed."""
    out = [steps[:i] + steps[i + 1 :] for i in range(len(steps))]
    for i, step in enumerate(steps):
        for alt in STEP_SPECS[step.kind].consts:
            if alt != step.const:
                out.append((*steps[:i], Step(step.kind, alt), *steps[i + 1 :]))
    return out


_FAILED = object()


def _safe_run(steps: Sequence[Step], value: Any) -> Any:
    try:
        return run_steps(steps, value)
    except (TypeError, ValueError, ZeroDivisionError):
        return _FAILED


def _chain_type(input_type: str, steps: Sequence[Step]) -> str | None:
    """The output type of a statically well-typed chain, else None."""
    current = input_type
    for step in steps:
        spec = STEP_SPECS[step.kind]
        if spec.in_type != current:
            return None
        current = spec.out_type
    return current


def _run_typed(steps: Sequence[Step], value: Any) -> Any:
    """``run_steps`` without the checks, for chains already known to be well-typed."""
    for step in steps:
        value = APPLY[step.kind](value, step.const)
    return value


def _choose_inputs(steps: tuple[Step, ...], pool: list[Any], n_tests: int) -> list[Any] | None:
    """``n_tests`` inputs from ``pool`` that catch every variant (greedy cover), or None."""
    input_type = STEP_SPECS[steps[0].kind].in_type
    expected = [_run_typed(steps, x) for x in pool]
    covers: list[set[int]] = []
    for variant in _variants(steps):
        # Well-typed variants skip the per-step type checks (same result, much faster).
        run = _run_typed if _chain_type(input_type, variant) else _safe_run
        caught = {i for i, x in enumerate(pool) if run(variant, x) != expected[i]}
        if not caught:
            return None
        covers.append(caught)
    chosen: list[int] = []
    while covers:
        best = max(range(len(pool)), key=lambda i: (sum(i in c for c in covers), -i))
        chosen.append(best)
        covers = [c for c in covers if best not in c]
    if len(chosen) > n_tests:
        return None
    rest = [i for i in range(len(pool)) if i not in chosen]
    return [pool[i] for i in sorted(chosen + rest[: n_tests - len(chosen)])]


def _draw_pool(rng: np.random.Generator, input_type: str, size: int) -> list[Any]:
    """Distinct candidate inputs (duplicates would waste a test)."""
    pool: list[Any] = []
    for _ in range(2 * size):
        x = _draw_input(rng, input_type)
        if x not in pool:
            pool.append(x)
        if len(pool) == size:
            break
    return pool


def _check_steps_range(min_steps: int, max_steps: int, n_tests: int) -> None:
    if not 1 <= min_steps <= max_steps <= MAX_STEPS:
        raise ValidationError(
            f"need 1 <= min_steps <= max_steps <= {MAX_STEPS} (got {min_steps}, {max_steps})"
        )
    if n_tests < 4:
        raise ValidationError(f"n_tests must be >= 4 (got {n_tests})")


def generate_program(
    rng: np.random.Generator,
    name: str,
    min_steps: int = 2,
    max_steps: int = 5,
    *,
    n_tests: int = 6,
    max_attempts: int = 200,
) -> Program:
    """A random well-typed program whose ``n_tests`` tests are discriminative."""
    _check_steps_range(min_steps, max_steps, n_tests)
    if not _NAME_RE.fullmatch(name):
        raise ValidationError(f"program name must be snake_case with an underscore: {name!r}")
    n_steps = int(rng.integers(min_steps, max_steps + 1))  # fixed: re-draws keep the length mix
    pools: dict[str, list[Any]] = {}  # candidate inputs are reused by re-drawn programs
    for _ in range(max_attempts):
        input_type = pick(rng, INPUT_TYPES)
        steps = _draw_steps(rng, input_type, n_steps)
        for attempt in range(2):  # re-draw the inputs a bounded number of times, then the program
            if attempt or input_type not in pools:
                pools[input_type] = _draw_pool(rng, input_type, 4 * n_tests)
            inputs = _choose_inputs(steps, pools[input_type], n_tests)
            if inputs is not None:
                return _build_program(name, input_type, steps, inputs)
    raise DataQualityError(f"no discriminative program for {name} in {max_attempts} attempts")


def _build_program(name: str, input_type: str, steps: tuple[Step, ...], inputs: list) -> Program:
    return Program(
        name=name,
        input_type=input_type,
        output_type=STEP_SPECS[steps[-1].kind].out_type,
        steps=steps,
        template=make_template(input_type, steps),
        requirements=tuple(requirement_line(s) for s in steps),
        tests=tuple((freeze(x), freeze(run_steps(steps, x))) for x in inputs),
    )


def generate_programs(
    rng: np.random.Generator,
    n: int,
    min_steps: int = 2,
    max_steps: int = 5,
    *,
    n_tests: int = 6,
) -> list[Program]:
    """``n`` programs with unique names (a numeric suffix once the word pairs run out)."""
    if n < 0:
        raise ValidationError(f"n must be >= 0 (got {n})")
    names: list[str] = []
    for round_no in range(n // len(ALL_NAMES) + 1):
        suffix = "" if round_no == 0 else f"_{round_no + 1}"
        names.extend(ALL_NAMES[i] + suffix for i in rng.permutation(len(ALL_NAMES)))
    return [generate_program(rng, nm, min_steps, max_steps, n_tests=n_tests) for nm in names[:n]]


def split_off_pool(
    programs: Sequence[Program], n_pool: int, rng: np.random.Generator
) -> tuple[list[Program], list[Program]]:
    """A seeded random ``n_pool`` of ``programs`` as the distractor pool, the rest as the
    dataset, each in its original order.

    Random, not the tail: names are handed out in rounds (``_2``, ``_3`` ... once the word
    pairs run out), so a tail pool would give every distractor a numbered name, and "a
    numbered name is someone else" would be a shortcut that fails on numbered targets.
    """
    if not 0 <= n_pool <= len(programs):
        raise ValidationError(f"n_pool must be in [0, {len(programs)}] (got {n_pool})")
    in_pool = np.zeros(len(programs), dtype=bool)
    in_pool[rng.permutation(len(programs))[:n_pool]] = True
    return (
        [p for p, pooled in zip(programs, in_pool, strict=True) if not pooled],
        [p for p, pooled in zip(programs, in_pool, strict=True) if pooled],
    )
