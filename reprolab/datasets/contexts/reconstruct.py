"""The deterministic reconstructor: canonical context -> Python source -> hidden-test pass rate.

It stands in for a code-writing LLM. ``compile_context`` turns every line that is exactly a
canonical requirement line (grammar: ``reprolab.datasets.contexts.grammar.STEP_SPECS``) into one
statement of ``def solution(value)``; anything else is ignored. The semantics are written
here as source text, independently of the data module's reference interpreter, so "the gold
context passes its tests" checks both.

Tests never run in the caller's process: persistent workers (fresh interpreters started by
fork + exec, like ``spawn``, so safe after torch or threads are loaded) run the source under a
per-context time limit. An exception, unserialisable result or wrong answer fails that test;
a timeout fails the tests not yet run, a crash fails the whole context; nothing raises into the
caller, and a worker that hangs or dies is killed and restarted.
Results are cached by sha256 of (context, tests_json): exact, as the reconstructor is
deterministic (results hit by a timeout are not cached, since timing is not).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from reprolab.core.errors import PipelineError, ValidationError

MAX_STEPS = 64  # parsed lines beyond this are ignored: bounds the work one context can ask for
_STARTUP_TIMEOUT_S = 60.0  # a fresh interpreter importing only the stdlib and reprolab.core.errors

# One statement per step kind; `_ints`, `_strs`, `_int`, `_str` make type mismatches raise.
_CODE: dict[str, str] = {
    "keep_gt": "value = [x for x in _ints(value) if x > {c}]",
    "keep_lt": "value = [x for x in _ints(value) if x < {c}]",
    "keep_div": "value = [x for x in _ints(value) if x % {c} == 0]",
    "drop_eq": "value = [x for x in _ints(value) if x != {c}]",
    "add": "value = [x + {c} for x in _ints(value)]",
    "sub": "value = [x - {c} for x in _ints(value)]",
    "mul": "value = [x * {c} for x in _ints(value)]",
    "sort_asc": "value = sorted(_ints(value))",
    "sort_desc": "value = sorted(_ints(value), reverse=True)",
    "reverse": "value = _ints(value)[::-1]",
    "dedup": "value = list(dict.fromkeys(_ints(value)))",
    "take": "value = _ints(value)[:{c}]",
    "skip": "value = _ints(value)[{c}:]",
    "sum": "value = sum(_ints(value))",
    "min": "value = min(_ints(value), default=0)",
    "max": "value = max(_ints(value), default=0)",
    "count": "value = len(_ints(value))",
    "int_add": "value = _int(value) + {c}",
    "int_mul": "value = _int(value) * {c}",
    "fmt_label": "value = {c} + '=' + str(_int(value))",
    "pad": "value = format(_int(value), '0{n}d')",
    "lower": "value = _str(value).lower()",
    "upper": "value = _str(value).upper()",
    "strip": "value = _str(value).strip()",
    "rev_text": "value = _str(value)[::-1]",
    "remove_char": "value = _str(value).replace({c}, '')",
    "replace_spaces": "value = _str(value).replace(' ', {c})",
    "take_chars": "value = _str(value)[:{c}]",
    "length": "value = len(_str(value))",
    "count_char": "value = _str(value).count({c})",
    "split": "value = _str(value).split()",
    "sort_words": "value = sorted(_strs(value))",
    "rev_words": "value = _strs(value)[::-1]",
    "keep_long": "value = [w for w in _strs(value) if len(w) > {c}]",
    "take_words": "value = _strs(value)[:{c}]",
    "join": "value = {c}.join(_strs(value))",
    "word_count": "value = len(_strs(value))",
}

_PRELUDE = """\
def _ints(v):
    if type(v) is not list or any(type(x) is not int for x in v):
        raise TypeError("expected list[int]")
    return v


def _strs(v):
    if type(v) is not list or any(type(x) is not str for x in v):
        raise TypeError("expected list[str]")
    return v


def _int(v):
    if type(v) is not int:
        raise TypeError("expected int")
    return v


def _str(v):
    if type(v) is not str:
        raise TypeError("expected str")
    return v


"""


def compile_context(context: str) -> str:
    """Python source of ``solution(value)`` applying the context's canonical lines in order."""
    from reprolab.datasets.contexts.grammar import parse_requirement  # the grammar's one home

    body: list[str] = []
    for line in context.splitlines():
        step = parse_requirement(line)
        if step is None:
            continue
        # repr() makes string constants safe literals; ints come from \d{1,3}.
        code = _CODE[step.kind].replace("{c}", repr(step.const)).replace("{n}", str(step.const))
        body.append(f"    {code}")
        if len(body) >= MAX_STEPS:
            break
    return (
        _PRELUDE + "def solution(value):\n" + "".join(f"{b}\n" for b in body) + "    return value\n"
    )


# ------------------------------------------------------------------------------- worker side
class _Timeout(BaseException):
    """Raised by SIGALRM in the worker; BaseException so generated code cannot swallow it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def _encode(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _run_item(source: str, tests: list[tuple[Any, str]], timeout_s: float) -> tuple[int, bool]:
    """(tests passed, timed out) for one source; every failure just scores 0."""
    signal.signal(signal.SIGALRM, _on_alarm)  # re-armed each time: sources may have changed it
    passed = 0
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        namespace: dict[str, Any] = {"__name__": "solution"}
        exec(compile(source, "<context>", "exec"), namespace)
        solution = namespace["solution"]
        for value, expected in tests:
            try:
                passed += _encode(solution(value)) == expected
            except _Timeout:
                raise
            except BaseException:
                continue
    except _Timeout:
        return passed, True
    except BaseException:
        return passed, False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return passed, False


def _worker_main(read_fd: int, write_fd: int, timeout_s: float) -> None:
    """Loop: receive a batch [(index, source, tests)], send (index, passed, timed_out) each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    outbox.send(("ready", os.getpid()))
    while True:
        try:
            batch = inbox.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if batch is None:
            return
        for index, source, tests in batch:
            try:
                passed, timed_out = _run_item(source, tests, timeout_s)
            except _Timeout:  # an alarm landing on the edge of _run_item
                passed, timed_out = 0, True
            outbox.send((index, passed, timed_out))


# ------------------------------------------------------------------------------- parent side
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class _Worker:
    """One worker: a fresh interpreter (fork + exec) talking over two pipes.

    Like multiprocessing's ``spawn`` it is safe after torch or threads are loaded, but it does
    not re-run the caller's ``__main__``, so workers start in ~50 ms without importing torch.
    """

    def __init__(self, timeout_s: float) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        code = (
            "from reprolab.datasets.contexts.reconstruct import _worker_main; "
            f"_worker_main({to_child_r}, {from_child_w}, {timeout_s!r})"
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.inbox = Connection(from_child_r, writable=False)
        self.outbox = Connection(to_child_w, readable=False)
        self.pid = self.proc.pid

    def wait_ready(self) -> None:
        try:
            ready = self.inbox.poll(_STARTUP_TIMEOUT_S)
            tag = self.inbox.recv()[0] if ready else ""
        except (EOFError, OSError):
            tag = ""
        if tag != "ready":
            self.kill()
            raise PipelineError("reconstructor: a worker process failed to start")

    def _close_pipes(self) -> None:
        self.inbox.close()
        self.outbox.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.outbox.send(None)
        try:
            self.proc.wait(1)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()


def _shutdown(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.stop()
    workers.clear()


def _parse_tests(tests_json: str) -> list[tuple[Any, str]]:
    """[(input, expected as canonical JSON)]; a malformed string is the caller's error."""
    try:
        tests = json.loads(tests_json)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"tests_json is not valid JSON: {exc}") from None
    if not isinstance(tests, list) or not tests:
        raise ValidationError("tests_json must be a non-empty list of [input, expected] pairs")
    if not all(isinstance(t, list) and len(t) == 2 for t in tests):
        raise ValidationError("tests_json must be a non-empty list of [input, expected] pairs")
    return [(value, _encode(expected)) for value, expected in tests]


def _cache_key(context: str, tests_json: str) -> str:
    payload = f"{len(context)}:{context}{tests_json}".encode()
    return hashlib.sha256(payload).hexdigest()


class Reconstructor:
    """Scores contexts by the share of hidden tests their compiled source passes.

    ``timeout_s`` bounds one context (all its tests) in a worker; a worker that does not
    answer within ``timeout_s`` plus a grace period is killed and restarted. Not thread-safe:
    use one Reconstructor per thread.
    """

    def __init__(
        self,
        workers: int = 1,
        timeout_s: float = 2.0,
        *,
        cache_size: int = 100_000,
    ) -> None:
        if workers < 1:
            raise ValidationError(f"workers must be >= 1 (got {workers})")
        if timeout_s <= 0:
            raise ValidationError(f"timeout_s must be > 0 (got {timeout_s})")
        if cache_size < 0:
            raise ValidationError(f"cache_size must be >= 0 (got {cache_size})")
        self.timeout_s = float(timeout_s)
        self._grace_s = max(0.5, self.timeout_s)
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._cache_size = cache_size
        self._hits = 0
        self._misses = 0
        self.restarts = 0
        self._workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)
        started = [_Worker(self.timeout_s) for _ in range(workers)]
        self._workers.extend(started)
        for worker in started:
            worker.wait_ready()

    # -- public API ------------------------------------------------------------------------
    def score(self, context: str, tests_json: str) -> float:
        """Share of the tests in ``tests_json`` that the compiled ``context`` passes."""
        return self.score_many([(context, tests_json)])[0]

    def score_many(self, items: Sequence[tuple[str, str]]) -> list[float]:
        """Pass rates for (context, tests_json) pairs: one round-trip, split across workers."""
        keys = [_cache_key(context, tests_json) for context, tests_json in items]
        results: dict[int, float] = {}
        first: dict[str, int] = {}  # key -> index of its first uncached copy in this batch
        jobs: list[tuple[int, str, list[tuple[Any, str]]]] = []
        for i, ((context, tests_json), key) in enumerate(zip(items, keys, strict=True)):
            if key in self._cache:
                self._cache.move_to_end(key)
                results[i] = self._cache[key]
            elif key not in first:
                first[key] = i
                jobs.append((i, compile_context(context), _parse_tests(tests_json)))
        self._misses += len(jobs)
        self._hits += len(items) - len(jobs)  # in-batch duplicates are served by the first copy
        n_tests = {i: len(tests) for i, _, tests in jobs}
        for i, (passed, clean) in self._run(jobs).items():
            results[i] = passed / n_tests[i]
            if clean:
                self._remember(keys[i], results[i])
        return [results[i] if i in results else results[first[k]] for i, k in enumerate(keys)]

    def all_pass(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        """Whether each context passes every one of its tests."""
        return [rate == 1.0 for rate in self.score_many(items)]

    @property
    def cache_hits(self) -> int:
        return self._hits

    @property
    def cache_misses(self) -> int:
        return self._misses

    @property
    def hit_rate(self) -> float:
        total = self._hits + self._misses
        return self._hits / total if total else 0.0

    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Reconstructor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- test hook -------------------------------------------------------------------------
    def _score_source(self, source: str, tests_json: str) -> float:
        """Run arbitrary ``source`` (defining ``solution``) in a worker; no cache."""
        tests = _parse_tests(tests_json)
        passed, _ = self._run([(0, source, tests)])[0]
        return passed / len(tests)

    # -- internals -------------------------------------------------------------------------
    def _remember(self, key: str, rate: float) -> None:
        self._cache[key] = rate
        while len(self._cache) > self._cache_size:  # least recently used goes first
            self._cache.popitem(last=False)

    def _run(
        self, jobs: list[tuple[int, str, list[tuple[Any, str]]]]
    ) -> dict[int, tuple[int, bool]]:
        """{index: (passed, clean)} for every job; clean = no timeout and no crash."""
        if not self._workers:
            raise PipelineError("reconstructor: used after close()")
        out: dict[int, tuple[int, bool]] = {}
        n = len(self._workers)
        size = -(-len(jobs) // n) if jobs else 0
        queues = [deque(jobs[w * size : (w + 1) * size]) for w in range(n)]
        deadlines = [0.0] * n
        for w in range(n):
            if queues[w]:
                deadlines[w] = self._send(w, queues[w])
        while any(queues):
            busy = [w for w in range(n) if queues[w]]
            pause = max(0.0, min(deadlines[w] for w in busy) - time.monotonic())
            ready = wait([self._workers[w].inbox for w in busy], timeout=pause)
            for w in busy:
                if self._workers[w].inbox in ready:
                    deadlines[w] = self._receive(w, queues, out)
                elif time.monotonic() >= deadlines[w]:
                    deadlines[w] = self._fail(w, queues, out)
        return out

    def _send(self, w: int, queue: deque) -> float:
        """Send the worker its queue; returns the deadline for its first answer."""
        try:
            self._workers[w].outbox.send(list(queue))
        except (OSError, ValueError):  # died while idle: restart once and resend
            self._restart(w)
            self._workers[w].outbox.send(list(queue))
        return time.monotonic() + self.timeout_s + self._grace_s

    def _receive(self, w: int, queues: list[deque], out: dict) -> float:
        try:
            index, passed, timed_out = self._workers[w].inbox.recv()
        except (EOFError, OSError):
            return self._fail(w, queues, out)
        job = queues[w].popleft()
        if index != job[0]:
            raise PipelineError("reconstructor: worker answered out of order")
        out[index] = (int(passed), not timed_out)
        return time.monotonic() + self.timeout_s + self._grace_s

    def _fail(self, w: int, queues: list[deque], out: dict) -> float:
        """The worker hung or died on its current job: score it 0, restart, resend the rest."""
        job = queues[w].popleft()
        out[job[0]] = (0, False)
        self._restart(w)
        return self._send(w, queues[w]) if queues[w] else 0.0

    def _restart(self, w: int) -> None:
        self._workers[w].kill()
        self.restarts += 1
        worker = _Worker(self.timeout_s)
        self._workers[w] = worker
        worker.wait_ready()
