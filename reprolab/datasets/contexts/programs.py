"""Seeded small programs and the messy contexts that describe them (CET data).

A program is a typed chain of steps over ``list`` (list[int]), ``str``, ``int`` and ``words``
(list[str]). Every step has ONE canonical requirement line (``STEP_SPECS``, the single home
of that phrasing); the gold context is those lines in execution order. The raw context is a
shuffled conversation: paraphrased steps with ordinal cues, wrong constants corrected later,
other programs' requirements (always named), near-duplicates, chatter, logs and config noise.

Attribution rule: a requirement line belongs to the target iff it names the target or names no
program; every distractor line names exactly one other program.

Expected test outputs come from the reference interpreter here (``run_steps``), which is
independent of the text compiler in :mod:`reprolab.datasets.contexts.reconstruct`, so
"gold passes" is a check.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reprolab.core.errors import DataQualityError, ValidationError

Const = int | str | None

TYPES: tuple[str, ...] = ("list", "str", "int", "words")
INPUT_TYPES: tuple[str, ...] = ("list", "str")
MAX_STEPS = 10  # ordinal words exist up to "tenth"
ORDINALS: tuple[str, ...] = (
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
)

_LETTERS = ("a", "e", "i", "o", "n", "r", "s", "t")
_SEPARATORS = ("-", "_", "+", ".", ",")
_LABELS = ("total", "result", "score", "value")


@dataclass(frozen=True)
class StepSpec:
    """A step kind: types, canonical line (``{c}`` = the constant), domain, paraphrases."""

    kind: str
    in_type: str
    out_type: str
    line: str
    consts: tuple[int | str, ...] = ()
    phrases: tuple[str, ...] = ()

    @property
    def has_const(self) -> bool:
        return bool(self.consts)


def _spec(kind: str, types: str, line: str, consts: Sequence[Any], *phrases: str) -> StepSpec:
    in_type, out_type = types.split(">")
    return StepSpec(kind, in_type, out_type, line, tuple(consts), (line, *phrases))


_R = range
# The canonical grammar. Phrases: the canonical line first, then paraphrases for raw contexts.
_SPEC_LIST: tuple[StepSpec, ...] = (
    # list[int] -> list[int]
    _spec("keep_gt", "list>list", "keep items greater than {c}", _R(0, 10),
          "keep only values above {c}", "filter to numbers > {c}",
          "throw away anything that is {c} or smaller"),
    _spec("keep_lt", "list>list", "keep items less than {c}", _R(1, 10),
          "keep only values below {c}", "filter to numbers < {c}",
          "discard every number that is {c} or bigger"),
    _spec("keep_div", "list>list", "keep items divisible by {c}", _R(2, 6),
          "keep only multiples of {c}", "filter to numbers where x % {c} == 0",
          "drop anything that {c} does not divide"),
    _spec("drop_eq", "list>list", "drop items equal to {c}", _R(0, 10),
          "remove every {c} from the list", "filter out values == {c}",
          "get rid of all occurrences of {c}"),
    _spec("add", "list>list", "add {c} to each item", _R(1, 10),
          "increase every value by {c}", "map x -> x + {c}", "bump each number up by {c}"),
    _spec("sub", "list>list", "subtract {c} from each item", _R(1, 10),
          "decrease every value by {c}", "map x -> x - {c}", "lower each number by {c}"),
    _spec("mul", "list>list", "multiply each item by {c}", _R(2, 6),
          "scale every value by {c}", "map x -> x * {c}", "make each element {c} times bigger"),
    _spec("sort_asc", "list>list", "sort ascending", (),
          "sort the values from small to large", "order the numbers in increasing order",
          "put the smallest numbers first"),
    _spec("sort_desc", "list>list", "sort descending", (),
          "sort the values from large to small", "order the numbers in decreasing order",
          "put the biggest numbers first"),
    _spec("reverse", "list>list", "reverse the list", (),
          "flip the order of the list", "reverse the item order", "turn the list back to front"),
    _spec("dedup", "list>list", "remove duplicates", (),
          "drop repeated values, keeping the first one", "deduplicate the list",
          "keep each value only once"),
    _spec("take", "list>list", "take the first {c} items", _R(1, 6),
          "keep only the first {c} values", "truncate the list to {c} elements",
          "cut the list down to its leading {c} numbers"),
    _spec("skip", "list>list", "drop the first {c} items", _R(1, 5),
          "skip the first {c} values", "discard the leading {c} elements",
          "ignore {c} numbers at the start"),
    # list[int] -> int (empty list: min and max give 0)
    _spec("sum", "list>int", "return the sum", (),
          "add all the numbers together", "output the total of the values", "sum everything up"),
    _spec("min", "list>int", "return the minimum", (),
          "output the smallest value (0 if empty)", "find the min", "give back the lowest number"),
    _spec("max", "list>int", "return the maximum", (),
          "output the largest value (0 if empty)", "find the max",
          "give back the highest number"),
    _spec("count", "list>int", "count the items", (),
          "return how many values remain", "output the length of the list",
          "tell me the number of elements"),
    # int -> int, int -> str
    _spec("int_add", "int>int", "add {c} to the number", _R(1, 10),
          "increase the result by {c}", "then + {c} on the total", "tack on another {c}"),
    _spec("int_mul", "int>int", "multiply the number by {c}", _R(2, 6),
          "scale the result by {c}", "then * {c} on the total", "make the number {c} times bigger"),
    _spec("fmt_label", "int>str", 'format as "{c}=<value>"', _LABELS,
          'render it as "{c}=" followed by the value', "print it like {c}=<value>",
          'put "{c}=" in front of it'),
    _spec("pad", "int>str", "pad to {c} digits", _R(3, 7),
          "left-pad the number with zeros to width {c}", "zero-fill to {c} places",
          "show it as a {c}-digit string with leading zeros"),
    # str -> str
    _spec("lower", "str>str", "convert to lowercase", (),
          "make the text lower case", "lowercase everything", "no capital letters please"),
    _spec("upper", "str>str", "convert to uppercase", (),
          "make the text upper case", "uppercase everything", "shout it: all caps"),
    _spec("strip", "str>str", "strip surrounding spaces", (),
          "trim whitespace at both ends", "remove leading and trailing spaces",
          "cut off the blanks around the text"),
    _spec("rev_text", "str>str", "reverse the text", (),
          "write the string backwards", "reverse the character order",
          "read it from right to left"),
    _spec("remove_char", "str>str", 'remove the letter "{c}"', _LETTERS,
          'delete every "{c}"', 'drop all "{c}" characters', 'strip out each "{c}"'),
    _spec("replace_spaces", "str>str", 'replace spaces with "{c}"', _SEPARATORS,
          'turn every space into "{c}"', 'swap blanks for "{c}"',
          'use "{c}" wherever there is a gap'),
    _spec("take_chars", "str>str", "take the first {c} characters", _R(2, 9),
          "keep only the first {c} letters", "truncate the text to {c} chars",
          "cut the string after {c} characters"),
    # str -> int, str -> words
    _spec("length", "str>int", "return the length", (),
          "count the characters", "output how long the text is", "give back the number of chars"),
    _spec("count_char", "str>int", 'count the letter "{c}"', _LETTERS,
          'return how many "{c}" there are', 'count occurrences of "{c}"',
          'tally up every "{c}"'),
    _spec("split", "str>words", "split into words", (),
          "break the text on whitespace", "tokenise into words", "chop it up at the spaces"),
    # words -> words, words -> str, words -> int
    _spec("sort_words", "words>words", "sort the words", (),
          "put the words in alphabetical order", "order the words a to z",
          "arrange the tokens like a dictionary"),
    _spec("rev_words", "words>words", "reverse the word order", (),
          "flip the order of the words", "reverse the words", "last word first, first word last"),
    _spec("keep_long", "words>words", "keep words longer than {c}", _R(1, 5),
          "keep only words with more than {c} letters", "filter to tokens where len > {c}",
          "drop words of {c} letters or fewer"),
    _spec("take_words", "words>words", "take the first {c} words", _R(1, 4),
          "keep only the first {c} words", "truncate to {c} words",
          "cut down to the leading {c} words"),
    _spec("join", "words>str", 'join the words with "{c}"', _SEPARATORS,
          'glue the words together using "{c}"', 'concatenate the words separated by "{c}"',
          'put "{c}" between the words'),
    _spec("word_count", "words>int", "count the words", (),
          "return how many words there are", "output the number of tokens",
          "tell me the word count"),
)  # fmt: skip

STEP_SPECS: dict[str, StepSpec] = {s.kind: s for s in _SPEC_LIST}
KINDS_BY_TYPE: dict[str, tuple[str, ...]] = {
    t: tuple(s.kind for s in _SPEC_LIST if s.in_type == t) for t in TYPES
}


def _line_pattern(spec: StepSpec) -> re.Pattern[str]:
    # Ints: up to 3 digits, so a context cannot ask for absurd widths or repetitions.
    const_re = r"(\d{1,3})" if spec.consts and isinstance(spec.consts[0], int) else r'([^"]{1,16})'
    pattern = const_re.join(re.escape(part) for part in spec.line.split("{c}"))
    return re.compile(pattern, re.ASCII)  # \d means 0-9 only


LINE_PATTERNS: dict[str, re.Pattern[str]] = {k: _line_pattern(s) for k, s in STEP_SPECS.items()}


@dataclass(frozen=True)
class Step:
    """One step of a program: its kind and constant (None for constant-free kinds)."""

    kind: str
    const: Const = None


def requirement_line(step: Step) -> str:
    """The canonical requirement line of ``step``."""
    return STEP_SPECS[step.kind].line.replace("{c}", str(step.const))


def parse_requirement(line: str) -> Step | None:
    """The step a canonical line states (exact match after strip), or None."""
    text = line.strip()
    for kind, pattern in LINE_PATTERNS.items():
        match = pattern.fullmatch(text)
        if match:
            if not match.groups():
                return Step(kind)
            return Step(kind, _const_of(STEP_SPECS[kind], match.group(1)))
    return None


def _const_of(spec: StepSpec, text: str) -> Const:
    """A constant parsed from text, typed by its step kind's domain."""
    return int(text) if isinstance(spec.consts[0], int) else text


def format_const(const: Const) -> str:
    """How a constant is quoted in correction lines: digits, or a double-quoted string."""
    return str(const) if isinstance(const, int) else f'"{const}"'


# --------------------------------------------------------------------- reference interpreter
def _dedup(values: list[int], _: Const) -> list[int]:
    out: list[int] = []
    for x in values:
        if x not in out:
            out.append(x)
    return out


_APPLY: dict[str, Callable[[Any, Any], Any]] = {
    "keep_gt": lambda v, c: [x for x in v if x > c],
    "keep_lt": lambda v, c: [x for x in v if x < c],
    "keep_div": lambda v, c: [x for x in v if x % c == 0],
    "drop_eq": lambda v, c: [x for x in v if x != c],
    "add": lambda v, c: [x + c for x in v],
    "sub": lambda v, c: [x - c for x in v],
    "mul": lambda v, c: [x * c for x in v],
    "sort_asc": lambda v, _: sorted(v),
    "sort_desc": lambda v, _: sorted(v, reverse=True),
    "reverse": lambda v, _: list(reversed(v)),
    "dedup": _dedup,
    "take": lambda v, c: v[:c],
    "skip": lambda v, c: v[c:],
    "sum": lambda v, _: sum(v),
    "min": lambda v, _: min(v) if v else 0,
    "max": lambda v, _: max(v) if v else 0,
    "count": lambda v, _: len(v),
    "int_add": lambda v, c: v + c,
    "int_mul": lambda v, c: v * c,
    "fmt_label": lambda v, c: f"{c}={v}",
    "pad": lambda v, c: str(v).zfill(c),
    "lower": lambda v, _: v.lower(),
    "upper": lambda v, _: v.upper(),
    "strip": lambda v, _: v.strip(),
    "rev_text": lambda v, _: "".join(reversed(v)),
    "remove_char": lambda v, c: "".join(ch for ch in v if ch != c),
    "replace_spaces": lambda v, c: "".join(c if ch == " " else ch for ch in v),
    "take_chars": lambda v, c: v[:c],
    "length": lambda v, _: len(v),
    "count_char": lambda v, c: sum(ch == c for ch in v),
    "split": lambda v, _: v.split(),
    "sort_words": lambda v, _: sorted(v),
    "rev_words": lambda v, _: list(reversed(v)),
    "keep_long": lambda v, c: [w for w in v if len(w) > c],
    "take_words": lambda v, c: v[:c],
    "join": lambda v, c: c.join(v),
    "word_count": lambda v, _: len(v),
}


def value_type(value: Any) -> str | None:
    """The grammar type of ``value`` ('list' and 'words' both accept an empty list)."""
    kind = type(value)
    if kind is int or kind is str:
        return kind.__name__
    if kind is list or kind is tuple:
        if all(type(x) is int for x in value):
            return "list"
        if all(type(x) is str for x in value):
            return "words"
    return None


def _accepts(type_name: str, value: Any) -> bool:
    found = value_type(value)
    return found == type_name or (found == "list" and type_name == "words" and not value)


def run_steps(steps: Sequence[Step], value: Any) -> Any:
    """Apply ``steps`` to ``value`` (reference semantics); TypeError on a type mismatch."""
    value = list(value) if isinstance(value, tuple) else value
    for step in steps:
        spec = STEP_SPECS[step.kind]
        if not _accepts(spec.in_type, value):
            raise TypeError(f"{step.kind} expects {spec.in_type}")
        value = _APPLY[step.kind](value, step.const)
    return value


def _freeze(value: Any) -> Any:
    return tuple(_freeze(x) for x in value) if isinstance(value, list | tuple) else value


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


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _draw_steps(rng: np.random.Generator, input_type: str, n_steps: int) -> tuple[Step, ...]:
    steps: list[Step] = []
    current = input_type
    for _ in range(n_steps):
        kinds = [k for k in KINDS_BY_TYPE[current] if not steps or k != steps[-1].kind]
        spec = STEP_SPECS[_pick(rng, kinds)]
        const = _pick(rng, spec.consts) if spec.consts else None
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
        value = _APPLY[step.kind](value, step.const)
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
        input_type = _pick(rng, INPUT_TYPES)
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
        tests=tuple((_freeze(x), _freeze(run_steps(steps, x))) for x in inputs),
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
    phrase = _pick(rng, STEP_SPECS[kind].phrases).replace("{c}", str(const))
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
    return f"{_pick(rng, _SPEAKERS)}: {text}" if rng.random() < 0.6 else text


def _other_const(rng: np.random.Generator, kind: str, const: Const) -> Const:
    choices = [c for c in STEP_SPECS[kind].consts if c != const]
    value = _pick(rng, choices)
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
        i = _pick(rng, const_steps)
        kind, name = program.steps[i].kind, _pick(rng, names)
        const = _other_const(rng, kind, program.steps[i].const)
        text = _attribute(rng, _statement(rng, kind, const, i + 1), name)
        return RawLine("near_dup", _speak(rng, text), i + 1, name, const)
    if r < 0.50:  # a requirement (or a correction) of another program
        if others:
            other = _pick(rng, others)
            j = int(rng.integers(len(other.steps)))
            name, step = other.name, other.steps[j]
        else:
            name, j = _pick(rng, names), int(rng.integers(4))
            kind = _pick(rng, tuple(STEP_SPECS))
            consts = STEP_SPECS[kind].consts
            step = Step(kind, _pick(rng, consts) if consts else None)
        if r < 0.43 or not STEP_SPECS[step.kind].has_const:
            text = _attribute(rng, _statement(rng, step.kind, step.const, j + 1), name)
        else:
            bad = _other_const(rng, step.kind, step.const)
            text = _correction(rng, name, j + 1, step.const, bad)
        return RawLine("distractor", _speak(rng, text), j + 1, name, step.const)
    if r < 0.70:
        return RawLine("chatter", _speak(rng, _pick(rng, _CHATTER)))
    if r < 0.85:
        h, m, sec = int(rng.integers(8, 19)), int(rng.integers(60)), int(rng.integers(60))
        clock = f"{h:02d}:{m:02d}:{sec:02d}"
        message = _pick(rng, _LOG_MESSAGES).replace("{k}", str(int(rng.integers(1, 64))))
        return RawLine("log", f"[{_pick(rng, _LOG_LEVELS)}] {clock} {message}")
    key, value = _pick(rng, _CONFIG_KEYS), int(rng.integers(1, 100))
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
    tests = tuple((_freeze(x), _freeze(y)) for x, y in json.loads(sample["tests"]))
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


# ----------------------------------------------------------------------- heuristic baseline
_H_NAME = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
_H_SPEAKER = re.compile(r"^[a-z]+:\s+")
_H_ORD_WORDS = "|".join(ORDINALS)
_H_PREFIXES = (
    re.compile(r"^after step \d+ comes step \d+:\s*"),
    re.compile(r"^before anything else \(step 1\):\s*"),
    re.compile(r"^step \d+:\s*"),
    re.compile(r"^\(\d+\)\s*"),
    re.compile(rf"^(?:{_H_ORD_WORDS}),\s*"),
    re.compile(rf"^the (?:{_H_ORD_WORDS}) step should\s*"),
)
_H_FIX = re.compile(r"step (\d+): make that (\S+?),? not (\S+)$")
_N = r"(\d+)"
_Q = r'"([^"]+)"'
# Keyword rules, first match wins: what an engineer writes after skimming some examples.
_H_RULES: tuple[tuple[str, str], ...] = (
    (rf"(?:drop|skip|discard) the (?:first|leading) {_N}", "skip"),
    (rf"first {_N} (?:items|values)|truncate the list to {_N}", "take"),
    (rf"first {_N} (?:characters|letters)|truncate the text to {_N}", "take_chars"),
    (rf"first {_N} words|truncate to {_N} words", "take_words"),
    (rf"longer than {_N}|more than {_N} letters|len > {_N}", "keep_long"),
    (rf"greater than {_N}|above {_N}|> {_N}", "keep_gt"),
    (rf"less than {_N}|below {_N}|< {_N}", "keep_lt"),
    (rf"divisible by {_N}|multiples of {_N}|% {_N}", "keep_div"),
    (rf"equal to {_N}|== {_N}|remove every {_N}", "drop_eq"),
    (rf"number by {_N}|scale the result by {_N}|\* {_N} on the total", "int_mul"),
    (rf"add {_N} to the number|increase the result by {_N}|\+ {_N} on the total", "int_add"),
    (rf"add {_N} to each|increase every value by {_N}|x \+ {_N}", "add"),
    (rf"subtract {_N}|decrease every value by {_N}|x - {_N}", "sub"),
    (rf"multiply each item by {_N}|scale every value by {_N}|x \* {_N}", "mul"),
    (r'"(\w+)=|like (\w+)=', "fmt_label"),
    (rf"{_N} digits|width {_N}|{_N} places", "pad"),
    (r"ascending|increasing|small to large", "sort_asc"),
    (r"descending|decreasing|large to small", "sort_desc"),
    (r"sort the words|alphabetical|a to z", "sort_words"),
    (r"word order|order of the words|reverse the words", "rev_words"),
    (r"reverse the list|order of the list|item order", "reverse"),
    (r"reverse the text|backwards|character order", "rev_text"),
    (r"duplicate|repeated", "dedup"),
    (r"count the words|how many words|number of tokens|word count", "word_count"),
    (rf"count the letter {_Q}|how many {_Q}|occurrences of {_Q}", "count_char"),
    (r"count the items|how many values|length of the list|number of elements", "count"),
    (r"the length|count the characters|how long|number of chars", "length"),
    (rf"join the words with {_Q}|using {_Q}|separated by {_Q}", "join"),
    (r"\bsum\b|total of|together", "sum"),
    (r"minimum|smallest|\bmin\b|lowest", "min"),
    (r"maximum|largest|\bmax\b|highest", "max"),
    (r"lowercase|lower case|lower", "lower"),
    (r"uppercase|upper case|caps", "upper"),
    (rf"remove the letter {_Q}|delete every {_Q}|drop all {_Q}", "remove_char"),
    (r"strip|trim|leading and trailing", "strip"),
    (rf"spaces with {_Q}|space into {_Q}|blanks for {_Q}", "replace_spaces"),
    (r"split|tokenise|whitespace", "split"),
)
_H_COMPILED = tuple((re.compile(p), k) for p, k in _H_RULES)


def _h_map(phrase: str) -> Step | None:
    for pattern, kind in _H_COMPILED:
        match = pattern.search(phrase)
        if not match:
            continue
        spec = STEP_SPECS[kind]
        if not spec.has_const:
            return Step(kind)
        raw = next((g for g in match.groups() if g is not None), None)
        return None if raw is None else Step(kind, _const_of(spec, raw))
    return None


def _h_ordinal(text: str) -> int | None:
    numbers = re.findall(r"\bstep (\d+)", text)  # the last one: "after step 1 comes step 2"
    if numbers:
        return int(numbers[-1])
    match = re.search(r"^\((\d+)\)", text)
    if match:
        return int(match.group(1))
    match = re.search(rf"^(?:the )?({_H_ORD_WORDS})\b", text)
    return ORDINALS.index(match.group(1)) + 1 if match else None


def _h_unattribute(text: str, name: str) -> str:
    for pattern in (rf"^for {name},\s*", rf"^{name}:\s*", rf"^\[{name}\]\s*"):
        text = re.sub(pattern, "", text)
    return re.sub(rf"\s*\(this is for {name}\)$", "", text)


def heuristic_context(raw: str, name: str) -> str:
    """Keyword baseline: keep target lines, map paraphrases to canonical lines, order by cue.

    Handles the "make that X, not Y" correction form only; other forms are ignored.
    """
    found: dict[int, Step] = {}
    unordered: list[Step] = []
    fixes: dict[int, str] = {}
    for line in raw.splitlines():
        text = _H_SPEAKER.sub("", line.strip())
        if text.startswith("task:") or any(n != name for n in _H_NAME.findall(text)):
            continue
        fix = _H_FIX.search(text)
        if fix:
            fixes[int(fix.group(1))] = fix.group(2).strip('"')
            continue
        text = _h_unattribute(text, name)
        order = _h_ordinal(text)
        phrase = text
        for prefix in _H_PREFIXES:
            phrase = prefix.sub("", phrase)
        step = _h_map(phrase)
        if step is None:
            continue
        if order is None:
            unordered.append(step)
        else:
            found.setdefault(order, step)
    for n, value in fixes.items():
        spec = STEP_SPECS[found[n].kind] if n in found else None
        if spec is not None and spec.has_const:
            try:
                found[n] = Step(spec.kind, _const_of(spec, value))
            except ValueError:  # "make that" with a non-number for a numeric step
                continue
    steps = [found[n] for n in sorted(found)] + unordered
    return "\n".join(requirement_line(s) for s in steps)
