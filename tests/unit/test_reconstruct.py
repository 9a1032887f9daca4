"""The reconstructor: canonical lines -> source -> pass rate, isolated in worker processes.

Scores must be exact shares of tests passed; anything that goes wrong inside a worker (an
exception, a hang, a hard crash) must score 0 without raising into the caller, and the
Reconstructor must keep working afterwards. Tests never run in the caller's process.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprolab.core.errors import PipelineError, ValidationError
from reprolab.core.seeding import rng
from reprolab.datasets.contexts.grammar import STEP_SPECS
from reprolab.datasets.contexts.programs import generate_programs, gold_context
from reprolab.datasets.contexts.reconstruct import _CODE, Reconstructor, compile_context

SEED = 20261121
LIST_TESTS = json.dumps([[[1, 5, 3, 8], 48], [[], 0], [[2, 2, 9], 27], [[4], 12]])
GOOD = "keep items greater than 2\nmultiply each item by 3\nreturn the sum"


@pytest.fixture(scope="module")
def recon() -> Iterator[Reconstructor]:
    with Reconstructor(workers=1, timeout_s=0.5) as r:
        yield r


def _tests(*pairs: tuple[object, object]) -> str:
    return json.dumps([list(p) for p in pairs])


# ------------------------------------------------------------------------------- compiling
def test_every_step_kind_has_code() -> None:
    assert set(_CODE) == set(STEP_SPECS)


def test_unparsable_lines_are_ignored(recon: Reconstructor) -> None:
    noisy = "\n".join(
        [
            "task: clean_scores",
            "step 1: keep items greater than 2",  # not canonical: ignored
            "  keep items greater than 2  ",
            "[INFO] 12:01:33 worker 3 started",
            "Multiply Each Item By 3",  # wrong case: ignored
            "multiply each item by 3",
            "return the sum",
            "thanks!",
        ]
    )
    assert compile_context(noisy) == compile_context(GOOD)
    assert recon.score(noisy, LIST_TESTS) == 1.0


def test_order_of_lines_matters(recon: Reconstructor) -> None:
    swapped = "multiply each item by 3\nkeep items greater than 2\nreturn the sum"
    assert recon.score(GOOD, LIST_TESTS) == 1.0
    # multiplying first keeps 3 and 6: [1,5,3,8] -> 51, [2,2,9] -> 39; only [] and [4] pass
    assert recon.score(swapped, LIST_TESTS) == 0.5


def test_step_semantics(recon: Reconstructor) -> None:
    cases = [
        ("return the minimum", _tests(([], 0), ([3, -1], -1))),
        ("return the maximum", _tests(([], 0), ([3, -1], 3))),
        ("remove duplicates", _tests(([3, 1, 3, 2, 1], [3, 1, 2]), ([], []))),
        ("drop the first 2 items\ncount the items", _tests(([1], 0), ([1, 2, 3], 1))),
        ('return the sum\nformat as "total=<value>"', _tests(([1, 2], "total=3"), ([], "total=0"))),
        ("return the sum\npad to 4 digits", _tests(([7], "0007"), ([-5], "-005"))),
        ('split into words\njoin the words with "-"', _tests((" a  bc ", "a-bc"), ("x", "x"))),
        ('remove the letter "a"\nreverse the text', _tests(("banana", "nnb"), ("", ""))),
        ("keep words longer than 2", _tests((["ab", "abc"], ["abc"]), ([], []))),
    ]
    for context, tests in cases:
        assert recon.score(context, tests) == 1.0, context


def test_type_mismatch_only_fails_the_test(recon: Reconstructor) -> None:
    assert recon.score("convert to uppercase", _tests(([1, 2], [1, 2]), ("ab", "AB"))) == 0.5
    assert recon.score("", _tests(([1], [1]), ("a", "b"))) == 0.5  # empty: identity


def test_partial_credit_is_the_share_passed(recon: Reconstructor) -> None:
    tests = _tests(([1, 2], 3), ([5], 5), ([0], 1), ([2, 2], 5))
    assert recon.score("return the sum", tests) == 0.5


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=400))
def test_any_text_compiles_to_valid_source(text: str) -> None:
    source = compile_context(text)
    compile(source, "<context>", "exec")  # raises on invalid source


def test_hostile_constants_stay_literals(recon: Reconstructor) -> None:
    sneaky = "join the words with \"'); import os; os._exit(3); ('\""
    source = compile_context("split into words\n" + sneaky)
    compile(source, "<context>", "exec")
    assert (
        recon.score(
            sneaky,
            _tests(
                (["a", "b"], "x"),
            ),
        )
        == 0.0
    )
    assert recon.score(GOOD, LIST_TESTS) == 1.0


# ------------------------------------------------------------------------------ isolation
def test_tests_run_in_a_worker_process(recon: Reconstructor) -> None:
    source = "import os\ndef solution(value):\n    return os.getpid()\n"
    assert recon._score_source(source, _tests((0, os.getpid()))) == 0.0
    (pid,) = recon.worker_pids
    assert pid != os.getpid()
    assert recon._score_source(source, _tests((0, pid))) == 1.0


def test_exceptions_and_bad_results_score_zero(recon: Reconstructor) -> None:
    raising = "def solution(value):\n    raise RuntimeError('boom')\n"
    unserialisable = "def solution(value):\n    return {1, 2}\n"
    exiting = "import sys\ndef solution(value):\n    sys.exit(1)\n"
    broken = "def solution(value) return 1"
    for source in (raising, unserialisable, exiting, broken):
        assert recon._score_source(source, LIST_TESTS) == 0.0
    assert recon.score(GOOD, LIST_TESTS) == 1.0


def test_busy_loop_times_out_and_worker_survives() -> None:
    with Reconstructor(timeout_s=0.3) as r:
        start = time.monotonic()
        assert r._score_source("def solution(value):\n    while True: pass\n", LIST_TESTS) == 0.0
        assert time.monotonic() - start < 2.0
        assert r.score(GOOD, LIST_TESTS) == 1.0


def test_hang_ignoring_the_alarm_kills_and_restarts_the_worker() -> None:
    hang = (
        "import signal, time\n"
        "def solution(value):\n"
        "    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "    time.sleep(60)\n"
    )
    with Reconstructor(timeout_s=0.2) as r:
        (before,) = r.worker_pids
        start = time.monotonic()
        assert r._score_source(hang, LIST_TESTS) == 0.0
        assert time.monotonic() - start < 5.0
        assert r.restarts == 1
        assert r.worker_pids != [before]
        assert r.score(GOOD, LIST_TESTS) == 1.0


def test_hard_crash_in_worker_scores_zero_and_caller_survives() -> None:
    crash = "import os\ndef solution(value):\n    os._exit(7)\n"
    with Reconstructor(workers=2, timeout_s=1.0) as r:
        assert r._score_source(crash, LIST_TESTS) == 0.0
        assert r.restarts == 1
        assert r.score(GOOD, LIST_TESTS) == 1.0


def test_crash_mid_batch_only_costs_that_item() -> None:
    programs = generate_programs(rng(SEED, "recon", "batch"), 6)
    items = [(gold_context(p), p.tests_json()) for p in programs]
    with Reconstructor(timeout_s=1.0) as r:
        jobs = [(i, compile_context(c), json.loads(t)) for i, (c, t) in enumerate(items)]
        jobs = [(i, s, [(x, json.dumps(y)) for x, y in t]) for i, s, t in jobs]
        crash = "import os\ndef solution(value):\n    os._exit(7)\n"
        jobs[2] = (2, crash, jobs[2][2])
        out = r._run(jobs)
        assert [out[i][0] == len(jobs[i][2]) for i in range(6)] == [1, 1, 0, 1, 1, 1]
        assert out[2] == (0, False)


# ----------------------------------------------------------------------- cache and batching
def test_cache_counts_hits_and_misses() -> None:
    other_tests = _tests(([3], 9), ([1], 5))
    with Reconstructor() as r:
        assert r.hit_rate == 0.0
        assert r.score(GOOD, LIST_TESTS) == 1.0
        assert (r.cache_hits, r.cache_misses) == (0, 1)
        assert r.score(GOOD, LIST_TESTS) == 1.0
        assert (r.cache_hits, r.cache_misses, r.hit_rate) == (1, 1, 0.5)
        assert r.score(GOOD, other_tests) == 0.5  # same context, other tests: a miss
        scores = r.score_many([(GOOD, other_tests), ("return the sum", LIST_TESTS)] * 2)
        assert scores == [0.5, 0.25, 0.5, 0.25]  # "return the sum" passes only []
        assert (r.cache_hits, r.cache_misses) == (4, 3)


def test_batch_is_fast_and_matches_single_scores() -> None:
    programs = generate_programs(rng(SEED, "recon", "speed"), 192)
    batches = [
        [(gold_context(p), p.tests_json()) for p in programs[k : k + 64]] for k in (0, 64, 128)
    ]
    with Reconstructor() as r:
        r.score(GOOD, LIST_TESTS)  # warm
        timings = []
        for batch in batches:
            start = time.perf_counter()
            assert r.score_many(batch) == [1.0] * 64
            timings.append(time.perf_counter() - start)
        print(f"\n64 contexts: {min(timings) * 1000:.1f} ms (best of 3, warm worker)")
        assert min(timings) < 0.5
    wrong = [(c.replace("sort ascending", "sort descending"), t) for c, t in batches[0]]
    with Reconstructor(workers=1) as one, Reconstructor(workers=3) as three:
        assert three.score_many(wrong) == one.score_many(wrong) == [one.score(*w) for w in wrong]


def test_invalid_input_raises_validation_errors(recon: Reconstructor) -> None:
    for bad in ("not json", "[]", "[[1, 2, 3]]", '{"a": 1}'):
        with pytest.raises(ValidationError):
            recon.score(GOOD, bad)
    with pytest.raises(ValidationError):
        Reconstructor(workers=0)
    with pytest.raises(ValidationError):
        Reconstructor(timeout_s=0)


def test_close_stops_workers_and_is_idempotent() -> None:
    r = Reconstructor(workers=2)
    pids = r.worker_pids
    r.close()
    r.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(PipelineError):
        r.score(GOOD, LIST_TESTS)
