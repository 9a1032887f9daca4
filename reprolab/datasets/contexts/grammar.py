"""The program grammar: typed steps, their one canonical requirement line each, and the
reference interpreter.

A program is a typed chain of steps over ``list`` (list[int]), ``str``, ``int`` and ``words``
(list[str]). Every step has ONE canonical requirement line (``STEP_SPECS``, the single home
of that phrasing); the gold context is those lines in execution order. Expected test outputs
come from the reference interpreter here (``run_steps``), which is independent of the text
compiler in :mod:`reprolab.datasets.contexts.reconstruct`, so "gold passes" is a check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
            return Step(kind, const_of(STEP_SPECS[kind], match.group(1)))
    return None


def const_of(spec: StepSpec, text: str) -> Const:
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


APPLY: dict[str, Callable[[Any, Any], Any]] = {
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
        value = APPLY[step.kind](value, step.const)
    return value


def freeze(value: Any) -> Any:
    return tuple(freeze(x) for x in value) if isinstance(value, list | tuple) else value
