"""The messy raw context of a program, line by line with each line's label, and the samples
(raw, gold, labels) the contexts dataset stores.

The raw context is a shuffled conversation: paraphrased steps with ordinal cues, wrong
constants corrected later, other programs' requirements (always named), near-duplicates,
chatter, logs and config noise. Attribution rule: a requirement line belongs to the target iff
it names the target or names no program; every distractor line names exactly one other
program.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reprolab.core.errors import DataQualityError, ValidationError
from reprolab.datasets.contexts.grammar import (
    ORDINALS,
    STEP_SPECS,
    Const,
    Step,
    format_const,
    freeze,
    parse_requirement,
    requirement_line,
)
from reprolab.datasets.contexts.programs import (
    ALL_NAMES,
    Program,
    generate_program,
    gold_context,
    make_template,
    pick,
    template_hash,
)

# ---------------------------------------------------------------------------- raw contexts
OTHER_PROGRAM_ROLES = frozenset({"distractor", "near_dup"})  # lines naming another program


@dataclass(frozen=True)
class RawLine:
    """One line of a raw context and what it is (for tests and analysis)."""

    role: str  # header | step | correction | distractor | near_dup | chatter | log | config
    text: str
    step: int = 0  # 1-based step number the line talks about (0: none)
    program: str = ""  # the program the line names ("" when unattributed)
    const: Const = None  # the constant stated on the line (wrong one, if later corrected)


_SPEAKERS = ("user", "dev", "pm", "alice", "bob", "qa")
_CHATTER = (
    "thanks!",
    "can you hurry?",
    "ok, looks good so far",
    "lgtm",
    "any update on this?",
    "ping me when it is done",
    "sounds good to me",
    "will check after lunch",
    "did the build pass?",
    "let's keep it simple",
    "who owns the deploy today?",
    "I'll review it tomorrow",
)
_LOG_MESSAGES = (
    "worker {k} started",
    "cache miss for shard {k}",
    "retrying request {k}",
    "heartbeat ok",
    "gc pause {k} ms",
    "queue depth {k}",
)
_LOG_LEVELS = ("INFO", "DEBUG", "WARN")
_CONFIG_KEYS = ("retry_limit", "batch_size", "max_workers", "timeout_s", "cache_ttl", "shards")


def _ordinal_cue(rng: np.random.Generator, n: int, phrase: str) -> str:
    """The statement of step ``n`` in one of five ordinal styles."""
    style = int(rng.integers(5))
    word = ORDINALS[n - 1]
    if style == 0:
        return f"step {n}: {phrase}"
    if style == 1:
        return f"{word}, {phrase}"
    if style == 2:
        return f"({n}) {phrase}"
    if style == 3:
        lead = f"after step {n - 1} comes step {n}" if n > 1 else "before anything else (step 1)"
        return f"{lead}: {phrase}"
    return f"the {word} step should {phrase}"


def _statement(rng: np.random.Generator, kind: str, const: Const, n: int) -> str:
    phrase = pick(rng, STEP_SPECS[kind].phrases).replace("{c}", str(const))
    return _ordinal_cue(rng, n, phrase)


def _attribute(rng: np.random.Generator, text: str, name: str) -> str:
    style = int(rng.integers(4))
    if style == 0:
        return f"for {name}, {text}"
    if style == 1:
        return f"{name}: {text}"
    if style == 2:
        return f"[{name}] {text}"
    return f"{text} (this is for {name})"


def _correction(rng: np.random.Generator, name: str, n: int, good: Const, bad: Const) -> str:
    g, b = format_const(good), format_const(bad)
    style = int(rng.integers(3))
    if style == 0:
        return f"{name}, step {n}: make that {g}, not {b}"
    if style == 1:
        return f"correction for step {n} of {name}: use {g} instead of {b}"
    return f"sorry, in {name} step {n} needs {g}, not {b}"


def _speak(rng: np.random.Generator, text: str) -> str:
    return f"{pick(rng, _SPEAKERS)}: {text}" if rng.random() < 0.6 else text


def _other_const(rng: np.random.Generator, kind: str, const: Const) -> Const:
    choices = [c for c in STEP_SPECS[kind].consts if c != const]
    value = pick(rng, choices)
    return int(value) if isinstance(value, int) else value


def _check_fraction(value: float, key: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValidationError(f"{key} must be in [0, 1] (got {value})")


def _fake_names(rng: np.random.Generator, exclude: str, k: int = 3) -> list[str]:
    pool = [nm for nm in ALL_NAMES if nm != exclude]
    return [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]


def _noise_line(
    rng: np.random.Generator, program: Program, others: Sequence[Program], names: Sequence[str]
) -> RawLine:
    """One distractor or noise line; every requirement-like line names another program."""
    r = rng.random()
    const_steps = [i for i, s in enumerate(program.steps) if STEP_SPECS[s.kind].has_const]
    if r < 0.15 and const_steps:  # near-duplicate of a target step, attributed elsewhere
        i = pick(rng, const_steps)
        kind, name = program.steps[i].kind, pick(rng, names)
        const = _other_const(rng, kind, program.steps[i].const)
        text = _attribute(rng, _statement(rng, kind, const, i + 1), name)
        return RawLine("near_dup", _speak(rng, text), i + 1, name, const)
    if r < 0.50:  # a requirement (or a correction) of another program
        if others:
            other = pick(rng, others)
            j = int(rng.integers(len(other.steps)))
            name, step = other.name, other.steps[j]
        else:
            name, j = pick(rng, names), int(rng.integers(4))
            kind = pick(rng, tuple(STEP_SPECS))
            consts = STEP_SPECS[kind].consts
            step = Step(kind, pick(rng, consts) if consts else None)
        if r < 0.43 or not STEP_SPECS[step.kind].has_const:
            text = _attribute(rng, _statement(rng, step.kind, step.const, j + 1), name)
        else:
            bad = _other_const(rng, step.kind, step.const)
            text = _correction(rng, name, j + 1, step.const, bad)
        return RawLine("distractor", _speak(rng, text), j + 1, name, step.const)
    if r < 0.70:
        return RawLine("chatter", _speak(rng, pick(rng, _CHATTER)))
    if r < 0.85:
        h, m, sec = int(rng.integers(8, 19)), int(rng.integers(60)), int(rng.integers(60))
        clock = f"{h:02d}:{m:02d}:{sec:02d}"
        message = pick(rng, _LOG_MESSAGES).replace("{k}", str(int(rng.integers(1, 64))))
        return RawLine("log", f"[{pick(rng, _LOG_LEVELS)}] {clock} {message}")
    key, value = pick(rng, _CONFIG_KEYS), int(rng.integers(1, 100))
    return RawLine("config", f"{key} = {value}")


def render_raw_lines(
    program: Program,
    rng: np.random.Generator,
    distractors: Sequence[Program] = (),
    *,
    noise: float = 0.5,
    corrections: float = 0.3,
) -> list[RawLine]:
    """The raw context as structured lines (``render_raw_context`` joins their text)."""
    _check_fraction(noise, "noise")
    _check_fraction(corrections, "corrections")
    others = [d for d in distractors if d.name != program.name]
    body: list[RawLine] = []
    fixes: list[RawLine] = []
    for n, step in enumerate(program.steps, 1):
        stated = step.const
        if STEP_SPECS[step.kind].has_const and rng.random() < corrections:
            stated = _other_const(rng, step.kind, step.const)
            text = _correction(rng, program.name, n, step.const, stated)
            fixes.append(RawLine("correction", _speak(rng, text), n, program.name, step.const))
        text = _statement(rng, step.kind, stated, n)
        named = rng.random() < 0.3  # the target is sometimes named, never another program
        if named:
            text = _attribute(rng, text, program.name)
        body.append(RawLine("step", _speak(rng, text), n, program.name if named else "", stated))
    names = [d.name for d in others] or _fake_names(rng, program.name)
    n_noise = min(48, round(noise * (10 + 4 * len(program.steps))))
    body.extend(_noise_line(rng, program, others, names) for _ in range(n_noise))
    body = [body[i] for i in rng.permutation(len(body))]
    for fix in fixes:  # each correction lands somewhere after its wrong statement
        pos = next(i for i, ln in enumerate(body) if ln.role == "step" and ln.step == fix.step)
        body.insert(int(rng.integers(pos + 1, len(body) + 1)), fix)
    return [RawLine("header", f"task: {program.name}", 0, program.name), *body]


def line_label(line: RawLine, program: Program) -> str:
    """What the CET says about one raw line of ``program``'s context, read on that line alone.

    ``"n: <canonical line>"`` for a statement of the program's step n (the constant as the
    line states it), ``"n= <constant>"`` for a correction of step n, ``""`` for every other
    line (header, other programs, near-duplicates, noise). :func:`assemble_context` turns a
    context's labels into its gold context.
    """
    if line.role == "step":
        stated = Step(program.steps[line.step - 1].kind, line.const)
        return f"{line.step}{LABEL_STEP}{requirement_line(stated)}"
    if line.role == "correction":
        return f"{line.step}{LABEL_FIX}{format_const(line.const)}"
    return ""


LABEL_STEP, LABEL_FIX = ": ", "= "
_LABEL_RE = re.compile(r"(\d{1,2})(: |= )(.+)")


def assemble_context(labels: Sequence[str]) -> str:
    """The engineered context from per-line labels: steps in order, corrections applied.

    The first statement of a step wins, the last correction of a step wins; a correction of
    a step never stated, a constant of the wrong type and an unparsable label are ignored
    (as the reconstructor ignores lines it cannot parse).
    """
    steps: dict[int, Step] = {}
    fixes: dict[int, str] = {}
    for label in labels:
        match = _LABEL_RE.fullmatch(label.strip())
        if not match:
            continue
        n, kind, body = int(match.group(1)), match.group(2), match.group(3)
        if kind == LABEL_FIX:
            fixes[n] = body
        elif (step := parse_requirement(body)) is not None:
            steps.setdefault(n, step)
    for n, value in fixes.items():
        if n not in steps or not STEP_SPECS[steps[n].kind].has_const:
            continue
        spec = STEP_SPECS[steps[n].kind]
        text = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
        with_fix = parse_requirement(spec.line.replace("{c}", text))
        if with_fix is not None and with_fix.kind == spec.kind:
            steps[n] = with_fix
    return "\n".join(requirement_line(steps[n]) for n in sorted(steps))


def render_raw_context(
    program: Program,
    rng: np.random.Generator,
    distractors: Sequence[Program] = (),
    *,
    noise: float = 0.5,
    corrections: float = 0.3,
) -> str:
    """A shuffled, noisy conversation stating ``program``'s requirements (see module doc)."""
    lines = render_raw_lines(program, rng, distractors, noise=noise, corrections=corrections)
    return "\n".join(line.text for line in lines)


# --------------------------------------------------------------------------------- samples
def program_id(program: Program) -> str:
    """A stable id: sha256 of the program's name, requirements and tests (16 hex digits)."""
    payload = json.dumps(
        [program.name, program.input_type, list(program.requirements), program.tests_json()]
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _pick_distractors(
    rng: np.random.Generator, program: Program, pool: Sequence[Program]
) -> list[Program]:
    candidates = [p for p in pool if p.name != program.name]
    if not candidates:
        return []
    k = min(len(candidates), int(rng.integers(1, 4)))
    return [candidates[i] for i in sorted(rng.choice(len(candidates), size=k, replace=False))]


def make_sample(
    program: Program,
    rng: np.random.Generator,
    distractor_pool: Sequence[Program] = (),
    *,
    noise: float = 0.5,
    corrections: float = 0.3,
) -> dict[str, Any]:
    """A flat parquet record: raw context, gold context, tests (JSON) and bookkeeping."""
    distractors = _pick_distractors(rng, program, distractor_pool)
    lines = render_raw_lines(program, rng, distractors, noise=noise, corrections=corrections)
    raw = "\n".join(line.text for line in lines)
    gold = gold_context(program)
    return {
        "program_id": program_id(program),
        "name": program.name,
        "input_type": program.input_type,
        "template": program.template,
        "template_hash": template_hash(program.template),
        "n_steps": len(program.steps),
        "raw": raw,
        "gold": gold,
        "tests": program.tests_json(),
        "line_labels": json.dumps([line_label(line, program) for line in lines]),
        "line_roles": json.dumps([line.role for line in lines]),
        "n_raw_chars": len(raw),
        "n_gold_chars": len(gold),
    }


def program_from_sample(sample: Mapping[str, Any]) -> Program:
    """Rebuild the Program of a sample from its gold lines and tests."""
    steps = tuple(parse_requirement(line) for line in str(sample["gold"]).split("\n"))
    if not steps or any(s is None for s in steps):
        raise DataQualityError(f"sample {sample.get('program_id')}: gold has a non-canonical line")
    typed = tuple(s for s in steps if s is not None)
    tests = tuple((freeze(x), freeze(y)) for x, y in json.loads(sample["tests"]))
    program = Program(
        name=str(sample["name"]),
        input_type=str(sample["input_type"]),
        output_type=STEP_SPECS[typed[-1].kind].out_type,
        steps=typed,
        template=make_template(str(sample["input_type"]), typed),
        requirements=tuple(requirement_line(s) for s in typed),
        tests=tests,
    )
    if program.template != sample["template"]:
        raise DataQualityError(f"sample {sample.get('program_id')}: template does not match gold")
    return program


def augment_sample(
    sample_or_program: Mapping[str, Any] | Program,
    rng: np.random.Generator,
    distractor_pool: Sequence[Program] = (),
    *,
    noise: float = 0.8,
    corrections: float = 0.5,
) -> dict[str, Any]:
    """The same program re-rendered: fresh paraphrases, more noise; gold and tests unchanged."""
    if isinstance(sample_or_program, Program):
        program = sample_or_program
    else:
        program = program_from_sample(sample_or_program)
    if not distractor_pool:  # invent a few other programs so attribution still matters
        names = _fake_names(rng, program.name, k=2)
        distractor_pool = [generate_program(rng, nm) for nm in names]
    return make_sample(program, rng, distractor_pool, noise=noise, corrections=corrections)
