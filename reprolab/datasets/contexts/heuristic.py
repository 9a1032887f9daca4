"""The heuristic keyword filter: a non-learned baseline for context engineering."""

from __future__ import annotations

import re

from reprolab.datasets.contexts.grammar import (
    ORDINALS,
    STEP_SPECS,
    Step,
    const_of,
    requirement_line,
)

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
        return None if raw is None else Step(kind, const_of(spec, raw))
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
                found[n] = Step(spec.kind, const_of(spec, value))
            except ValueError:  # "make that" with a non-number for a numeric step
                continue
    steps = [found[n] for n in sorted(found)] + unordered
    return "\n".join(requirement_line(s) for s in steps)
