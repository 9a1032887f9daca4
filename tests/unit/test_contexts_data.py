"""CET data: seeded programs, discriminative tests, raw contexts and the heuristic baseline.

The generator must be reproducible, every program well-typed with tests that catch any dropped
step or changed constant, the gold context must pass every test through the reconstructor,
and the raw context must be much harder than the gold one while still stating every fact.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprolab.core.errors import ValidationError
from reprolab.core.seeding import rng
from reprolab.datasets.contexts.grammar import (
    ORDINALS,
    STEP_SPECS,
    Step,
    format_const,
    parse_requirement,
    requirement_line,
    run_steps,
    value_type,
)
from reprolab.datasets.contexts.heuristic import heuristic_context
from reprolab.datasets.contexts.programs import (
    ALL_NAMES,
    Program,
    generate_program,
    generate_programs,
    gold_context,
    make_template,
    split_off_pool,
    template_hash,
)
from reprolab.datasets.contexts.reconstruct import Reconstructor
from reprolab.datasets.contexts.render import (
    OTHER_PROGRAM_ROLES,
    assemble_context,
    augment_sample,
    line_label,
    make_sample,
    program_from_sample,
    render_raw_context,
    render_raw_lines,
)

SEED = 20261121
SAMPLE_KEYS = {
    "program_id",
    "name",
    "input_type",
    "template",
    "template_hash",
    "n_steps",
    "raw",
    "gold",
    "tests",
    "line_labels",
    "line_roles",
    "n_raw_chars",
    "n_gold_chars",
}
NAME_RE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")


@pytest.fixture(scope="module")
def programs() -> list[Program]:
    return generate_programs(rng(SEED, "contexts", "programs"), 300)


@pytest.fixture(scope="module")
def samples(programs: list[Program]) -> list[dict]:
    gen = rng(SEED, "contexts", "samples")
    return [make_sample(p, gen, programs, noise=0.5, corrections=0.3) for p in programs]


@pytest.fixture(scope="module")
def recon() -> Iterator[Reconstructor]:
    with Reconstructor(workers=1) as r:
        yield r


def _changed(steps: tuple[Step, ...], test_input: object, expected: object) -> bool:
    try:
        return run_steps(steps, test_input) != expected
    except (TypeError, ValueError, ZeroDivisionError):
        return True


# ---------------------------------------------------------------------------- determinism
def _batch(seed: int) -> str:
    progs = generate_programs(rng(seed, "p"), 12)
    gen = rng(seed, "s")
    rows = [make_sample(p, gen, progs, noise=0.7, corrections=0.5) for p in progs]
    return json.dumps(rows, sort_keys=True)


def test_same_seed_same_bytes_different_seed_differs() -> None:
    assert _batch(1) == _batch(1)
    assert _batch(1) != _batch(2)


# ------------------------------------------------------------------------------- programs
def test_programs_are_well_typed(programs: list[Program]) -> None:
    for p in programs:
        current = p.input_type
        for step in p.steps:
            spec = STEP_SPECS[step.kind]
            assert spec.in_type == current, p.template
            assert (step.const is None) == (not spec.consts)
            assert step.const is None or step.const in spec.consts
            current = spec.out_type
        assert current == p.output_type
        assert 2 <= len(p.steps) <= 5
        assert p.template == make_template(p.input_type, p.steps)
        assert p.requirements == tuple(requirement_line(s) for s in p.steps)
        assert gold_context(p) == "\n".join(p.requirements)


def test_tests_are_reference_outputs_with_distinct_inputs(programs: list[Program]) -> None:
    for p in programs:
        assert len(p.tests) >= 4
        inputs = [json.dumps(x) for x, _ in p.tests]
        assert len(set(inputs)) == len(inputs)
        for x, expected in p.tests:
            assert value_type(x) == p.input_type
            assert json.dumps(p.run(x)) == json.dumps(expected)


def test_tests_are_discriminative(programs: list[Program]) -> None:
    """Dropping any step or changing any constant changes some test's output."""
    for p in programs:
        variants = [p.steps[:i] + p.steps[i + 1 :] for i in range(len(p.steps))]
        for i, step in enumerate(p.steps):
            for alt in STEP_SPECS[step.kind].consts:
                if alt != step.const:
                    variants.append((*p.steps[:i], Step(step.kind, alt), *p.steps[i + 1 :]))
        for variant in variants:
            assert any(_changed(variant, x, y) for x, y in p.tests), (p.template, variant)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lo=st.integers(1, 4), extra=st.integers(0, 2))
def test_any_seed_gives_a_valid_program(seed: int, lo: int, extra: int) -> None:
    p = generate_program(rng(seed, "h"), "tidy_rows", lo, lo + extra, n_tests=5)
    assert lo <= len(p.steps) <= lo + extra
    assert len(p.tests) == 5
    for i in range(len(p.steps)):
        dropped = p.steps[:i] + p.steps[i + 1 :]
        assert any(_changed(dropped, x, y) for x, y in p.tests)


def test_names_unique_and_snake_case(programs: list[Program]) -> None:
    names = [p.name for p in programs]
    assert len(set(names)) == len(names)
    assert all(NAME_RE.fullmatch(n) for n in names)
    assert len(ALL_NAMES) == len(set(ALL_NAMES))


def test_bad_arguments_raise_validation_errors() -> None:
    gen = rng(SEED, "bad")
    with pytest.raises(ValidationError):
        generate_program(gen, "ok_name", 4, 3)
    with pytest.raises(ValidationError):
        generate_program(gen, "nounderscore")
    with pytest.raises(ValidationError):
        generate_program(gen, "ok_name", n_tests=3)
    p = generate_program(gen, "ok_name")
    with pytest.raises(ValidationError):
        render_raw_context(p, gen, noise=1.5)
    with pytest.raises(ValidationError):
        render_raw_context(p, gen, corrections=-0.1)


# -------------------------------------------------------------------------------- grammar
def test_canonical_lines_round_trip_and_are_distinct() -> None:
    lines = set()
    for kind, spec in STEP_SPECS.items():
        step = Step(kind, spec.consts[-1] if spec.consts else None)
        line = requirement_line(step)
        assert line == line.lower() and 2 <= len(line.split()) <= 7
        assert parse_requirement(f"  {line} ") == step
        assert parse_requirement(line.upper()) is None
        lines.add(line)
    assert len(lines) == len(STEP_SPECS)
    assert parse_requirement("step 1: sort ascending") is None


def test_template_hash_normalisation() -> None:
    expected = hashlib.sha256(b"list:keep_gt|sort_asc|sum").hexdigest()
    assert template_hash("list:keep_gt|sort_asc|sum") == expected
    assert template_hash("  List:Keep_GT | sort_asc |SUM\n") == expected
    assert template_hash("list:keep_gt|sort_desc|sum") != expected


# ---------------------------------------------------------------------------- raw contexts
def _ordinal_cue(text: str, n: int) -> bool:
    word = ORDINALS[n - 1]
    return bool(
        re.search(rf"\bstep {n}\b", text)
        or re.search(rf"(^|: |\] |, )\({n}\) ", text)
        or re.search(rf"(^|: |\] |, ){word}, ", text)
        or re.search(rf"\bthe {word} step\b", text)
    )


def test_raw_lines_state_every_fact_with_cues_and_attribution(programs: list[Program]) -> None:
    gen = rng(SEED, "contexts", "structure")
    n_corrections = 0
    for p in programs[:120]:
        lines = render_raw_lines(p, gen, programs, noise=1.0, corrections=1.0)
        assert lines[0].text == f"task: {p.name}"
        texts = [ln.text for ln in lines]
        for n, step in enumerate(p.steps, 1):
            at = [i for i, ln in enumerate(lines) if ln.role == "step" and ln.step == n]
            assert len(at) == 1
            stated = lines[at[0]]
            assert _ordinal_cue(stated.text, n), stated.text
            assert set(NAME_RE.findall(stated.text)) <= {p.name}
            if step.const is None:
                continue
            # corrections=1.0: stated wrong first, corrected later by a line naming the target
            fixes = [i for i, ln in enumerate(lines) if ln.role == "correction" and ln.step == n]
            assert len(fixes) == 1 and fixes[0] > at[0]
            fix = texts[fixes[0]]
            assert p.name in fix and f"step {n}" in fix
            assert format_const(step.const) in fix and format_const(stated.const) in fix
            assert stated.const != step.const
            n_corrections += 1
        for ln in lines:
            if ln.role in ("distractor", "near_dup"):
                assert ln.program != p.name
                assert NAME_RE.findall(ln.text) == [ln.program], ln.text
                assert p.name not in ln.text
    assert n_corrections > 100


def test_without_corrections_every_step_states_its_true_constant(programs: list[Program]) -> None:
    gen = rng(SEED, "contexts", "plain")
    for p in programs[:100]:
        lines = render_raw_lines(p, gen, programs, noise=0.5, corrections=0.0)
        assert not [ln for ln in lines if ln.role == "correction"]
        for n, step in enumerate(p.steps, 1):
            (stated,) = [ln for ln in lines if ln.role == "step" and ln.step == n]
            assert stated.const == step.const
            if step.const is not None:
                assert str(step.const) in stated.text


def test_noise_scales_distractors_and_lengths_stay_bounded(programs: list[Program]) -> None:
    gen = rng(SEED, "contexts", "noise")
    mid = [p for p in programs if len(p.steps) in (3, 4)][:60]
    quiet = [len(render_raw_context(p, gen, programs, noise=0.0)) for p in mid]
    normal = [len(render_raw_context(p, gen, programs, noise=0.5)) for p in mid]
    loud = [len(render_raw_context(p, gen, programs, noise=1.0)) for p in programs]
    print(f"\nraw chars, 3-4 steps: noise 0 {statistics.mean(quiet):.0f}, "
          f"0.5 {statistics.mean(normal):.0f}; noise 1 max {max(loud)}")  # fmt: skip
    assert statistics.mean(quiet) < statistics.mean(normal) < 1400
    assert statistics.mean(normal) >= 600
    assert max(loud) <= 2500


# -------------------------------------------------------------------------------- samples
def test_sample_records(samples: list[dict], programs: list[Program]) -> None:
    for s, p in zip(samples, programs, strict=True):
        assert set(s) == SAMPLE_KEYS
        assert s["gold"] == gold_context(p) and s["n_steps"] == len(p.steps)
        assert s["n_raw_chars"] == len(s["raw"]) and s["n_gold_chars"] == len(s["gold"])
        assert s["template_hash"] == template_hash(s["template"])
        assert json.dumps(json.loads(s["tests"]), sort_keys=True) == s["tests"]
        assert s["raw"].startswith(f"task: {p.name}\n")
        assert program_from_sample(s) == p
    assert len({s["program_id"] for s in samples}) == len(samples)


def test_augmentation_keeps_gold_and_changes_raw(samples: list[dict], programs: list[Program]):
    gen = rng(SEED, "contexts", "augment")
    for s in samples[:40]:
        aug = augment_sample(s, gen, programs)
        for key in ("program_id", "gold", "template", "template_hash", "tests", "name"):
            assert aug[key] == s[key]
        assert aug["raw"] != s["raw"]
    alone = augment_sample(programs[0], gen)  # no pool: invented distractors
    assert alone["gold"] == samples[0]["gold"] and alone["raw"] != samples[0]["raw"]


# ------------------------------------------------------------------ gold vs raw vs heuristic
def test_gold_context_passes_every_test(samples: list[dict], recon: Reconstructor) -> None:
    scores = recon.score_many([(s["gold"], s["tests"]) for s in samples])
    assert len(scores) == 300
    assert scores == [1.0] * 300


def test_raw_scores_far_lower_and_heuristic_in_between(
    samples: list[dict], recon: Reconstructor
) -> None:
    gold = statistics.mean(recon.score_many([(s["gold"], s["tests"]) for s in samples]))
    raw = statistics.mean(recon.score_many([(s["raw"], s["tests"]) for s in samples]))
    contexts = [heuristic_context(s["raw"], s["name"]) for s in samples]
    pairs = [(c, s["tests"]) for c, s in zip(contexts, samples, strict=True)]
    heur = statistics.mean(recon.score_many(pairs))
    print(
        f"\nmean pass rate over {len(samples)}: gold {gold:.3f} raw {raw:.3f} heuristic {heur:.3f}"
    )
    assert gold == 1.0
    assert raw <= 0.1
    assert raw + 0.1 < heur < gold - 0.2
    # the baseline only ever writes canonical lines
    assert all(parse_requirement(line) for c in contexts for line in c.splitlines())


def test_heuristic_uses_attribution_order_and_the_simple_correction() -> None:
    raw = "\n".join(
        [
            "task: clean_scores",
            "user: second, add all the numbers together",
            "for parse_ids, step 1: sort descending",
            "dev: step 1: keep only values above 7",
            "[parse_ids] (2) find the max",
            "clean_scores, step 1: make that 3, not 7",
        ]
    )
    assert heuristic_context(raw, "clean_scores") == "keep items greater than 3\nreturn the sum"


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=300))
def test_heuristic_never_raises(text: str) -> None:
    out = heuristic_context(text, "clean_scores")
    assert all(parse_requirement(line) for line in out.splitlines())


# ------------------------------------------------------------------ line labels (the CET's unit)
@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    noise=st.floats(0.0, 1.0),
    corrections=st.floats(0.0, 1.0),
)
def test_line_labels_assemble_to_the_gold_context(
    seed: int, noise: float, corrections: float
) -> None:
    """The labels of a raw context's lines, each read alone, carry exactly the gold context:
    so a CET that labels every line right is always right."""
    gen = rng(seed, "labels")
    program, *others = generate_programs(gen, 4, 1, 5)
    sample = make_sample(program, gen, others, noise=noise, corrections=corrections)
    labels = json.loads(sample["line_labels"])
    lines = sample["raw"].split("\n")
    roles = json.loads(sample["line_roles"])
    assert len(labels) == len(lines) == len(roles)
    assert assemble_context(labels) == sample["gold"]
    assert {r for r, x in zip(roles, labels, strict=True) if x} <= {"step", "correction"}
    for line, label, role in zip(lines, labels, roles, strict=True):
        named = set(re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", line))
        if named - {program.name}:  # other programs' lines say nothing
            assert label == "", line
        if role in OTHER_PROGRAM_ROLES:
            assert named - {program.name}, line


def test_line_label_roles() -> None:
    gen = rng(SEED, "roles")
    programs = generate_programs(gen, 40, 3, 3)
    program = next(p for p in programs if any(STEP_SPECS[s.kind].has_const for s in p.steps))
    others = [p for p in programs if p is not program][:3]
    lines = render_raw_lines(program, gen, others, noise=1.0, corrections=1.0)
    by_role = {ln.role: line_label(ln, program) for ln in lines}
    assert by_role["header"] == "" and by_role.get("distractor", "") == ""
    fix = next(ln for ln in lines if ln.role == "correction")
    assert line_label(fix, program) == f"{fix.step}= {format_const(fix.const)}"
    step = next(ln for ln in lines if ln.role == "step")
    kind = program.steps[step.step - 1].kind
    assert line_label(step, program) == f"{step.step}: {requirement_line(Step(kind, step.const))}"


def test_assemble_orders_applies_the_last_fix_and_ignores_noise() -> None:
    labels = [
        "2: sort ascending",
        "",
        "1: keep items greater than 3",
        "1= 5",
        "garbage",
        "1= 7",  # the last correction of a step wins
        "3= 4",  # a correction of a step never stated
        "2= 9",  # a constant for a step without one
        "1: keep items less than 2",  # the first statement of a step wins
        '4: join the words with "-"',
        '4= "+"',
        "5: no such requirement",
    ]
    assert assemble_context(labels) == (
        'keep items greater than 7\nsort ascending\njoin the words with "+"'
    )
    assert assemble_context(["1: take the first 3 items", '1= "x"']) == "take the first 3 items"
    assert assemble_context([]) == ""


def test_the_distractor_pool_is_a_random_subset_not_the_numbered_tail() -> None:
    gen = rng(SEED, "pool")
    programs = generate_programs(gen, 2 * len(ALL_NAMES), 2, 2)  # every second name numbered
    data, pool = split_off_pool(programs, len(ALL_NAMES) // 2, rng(SEED, "split"))
    assert len(data) + len(pool) == len(programs)
    assert {p.name for p in data}.isdisjoint(p.name for p in pool)
    kept = {p.name for p in data}
    assert [p.name for p in data] == [p.name for p in programs if p.name in kept]  # in order

    def numbered(ps: list[Program]) -> float:
        return statistics.mean(bool(re.search(r"_\d+$", p.name)) for p in ps)

    assert 0.4 < numbered(pool) < 0.6 and 0.4 < numbered(data) < 0.6
    with pytest.raises(ValidationError):
        split_off_pool(programs, len(programs) + 1, gen)
