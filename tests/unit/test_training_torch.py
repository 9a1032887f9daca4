"""The PyTorch guard: NaN/Inf, out of memory, signals, checkpoints and exact resume."""

from __future__ import annotations

import itertools
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reprolab.core.config import GuardParams
from reprolab.core.errors import PipelineError, ResourceLimitError
from reprolab.guard.common.schedule import lr_multiplier
from reprolab.guard.common.signals import TrainingInterrupted
from reprolab.guard.torch.fit import (
    NonFiniteStep,
    guarded_steps,
    make_scheduler,
    set_lr,
)
from tests.tiny import repo_params

X = torch.tensor(np.random.default_rng(0).normal(size=(64, 3)), dtype=torch.float32)
Y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.1


class Loop:
    """A tiny regression trained step by step; ``faults`` injects failures by step."""

    def __init__(self, faults: dict[int, list[str]] | None = None) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(3, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.micro_seen: list[int] = []
        self.lrs: list[float] = []

    def step(self, step: int, micro: int) -> dict[str, float]:
        fault = self.faults.get(step)
        if fault:
            kind = fault.pop(0)
            if kind == "nan":
                raise NonFiniteStep("loss nan")
            if kind == "oom":
                raise RuntimeError("CPU out of memory: tried to allocate 1 GB")
            if kind == "signal":
                os.kill(os.getpid(), signal.SIGTERM)
        self.micro_seen.append(micro)
        self.lrs.append(self.opt.param_groups[0]["lr"])
        rows = np.random.default_rng(step).choice(64, 16, replace=False)
        self.opt.zero_grad()
        total = 0.0
        for i in range(0, 16, micro):  # accumulate micro-batches: the same update
            part = rows[i : i + micro]
            loss = ((self.model(X[part]).squeeze(-1) - Y[part]) ** 2).mean()
            (loss * len(part) / 16).backward()
            total += float(loss.detach()) * len(part) / 16
        self.opt.step()
        return {"loss": total}

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def restore(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["opt"])

    def run(self, tmp: Path, steps: int = 10, guard: GuardParams | None = None, **kw: Any):
        return guarded_steps(
            phase="toy",
            steps=steps,
            batch_size=16,
            learning_rate=0.1,
            step_fn=self.step,
            set_learning_rate=lambda lr: set_lr(self.opt, lr),
            state=self.state,
            restore=self.restore,
            checkpoint_dir=tmp,
            checkpoint_every=3,
            setup="toy",
            guard=guard
            or replace(repo_params().train.mamba.guard, min_batch_size=2, max_nan_retries=2),
            **kw,
        )

    def weights(self) -> list[np.ndarray]:
        return [p.detach().numpy().copy() for p in self.model.parameters()]


def test_clean_run_learns_and_checkpoints_the_end(tmp_path: Path) -> None:
    loop = Loop()
    logs: list[float] = []
    state = loop.run(tmp_path, on_step=lambda s, lg: logs.append(lg["loss"]))
    assert state.next_step == 10 and state.events == []
    assert logs[-1] < logs[0] / 4
    assert (tmp_path / "toy.pt").exists()


def test_non_finite_step_halves_the_learning_rate_and_retries(tmp_path: Path) -> None:
    loop = Loop({4: ["nan"]})
    state = loop.run(tmp_path)
    assert state.next_step == 10 and state.nan_retries == 1
    assert loop.lrs[:4] == [0.1] * 4 and loop.lrs[4:] == [0.05] * 6
    assert "learning rate halved to 0.05" in state.events[0]


def test_too_many_non_finite_steps_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"toy: step 2/10 not finite after 2"):
        Loop({1: ["nan"] * 5}).run(tmp_path)


def test_out_of_memory_halves_the_micro_batch_with_the_same_update(tmp_path: Path) -> None:
    clean, hit = Loop(), Loop({2: ["oom", "oom"]})
    clean.run(tmp_path / "a")
    state = hit.run(tmp_path / "b")
    assert state.micro_batch == 4 and hit.micro_seen[:3] == [16, 16, 4]
    for a, b in zip(clean.weights(), hit.weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)  # accumulation order only


def test_out_of_memory_below_the_minimum_fails(tmp_path: Path) -> None:
    with pytest.raises(ResourceLimitError, match=r"guard\.min_batch_size = 8"):
        Loop({0: ["oom"] * 3}).run(
            tmp_path, guard=replace(repo_params().train.mamba.guard, min_batch_size=8)
        )


def test_signal_checkpoints_and_a_rerun_resumes_to_the_same_weights(tmp_path: Path) -> None:
    reference = Loop()
    reference.run(tmp_path / "ref")
    first = Loop({4: ["signal"]})
    with pytest.raises(TrainingInterrupted, match="after step 5/10") as info:
        first.run(tmp_path / "run")
    assert info.value.exit_code == 128 + signal.SIGTERM
    resumed = Loop()
    state = resumed.run(tmp_path / "run")
    assert any("resumed" in e and "step 6/10" in e for e in state.events)
    assert len(resumed.micro_seen) == 5  # only the remaining steps ran
    for a, b in zip(reference.weights(), resumed.weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_of_another_setup_is_ignored(tmp_path: Path) -> None:
    Loop().run(tmp_path, steps=6)
    again = Loop()
    state = again.run(tmp_path, steps=10)  # another set-up: starts over
    assert len(again.micro_seen) == 10
    assert any("different set-up" in e for e in state.events)


def test_stop_ends_the_phase_early(tmp_path: Path) -> None:
    loop = Loop()
    state = loop.run(tmp_path, stop=lambda: len(loop.micro_seen) >= 4)
    assert len(loop.micro_seen) == 4 and state.next_step == 10
    assert "stopped early after step 4/10" in state.events[-1]


@given(
    steps=st.integers(1, 500),
    warmup=st.integers(0, 500),
    ratio=st.floats(0.0, 1.0),
    schedule=st.sampled_from(["constant", "cosine"]),
)
def test_schedule_warms_up_linearly_then_holds_or_decays_to_the_floor(
    steps: int, warmup: int, ratio: float, schedule: str
) -> None:
    warmup = min(warmup, steps)
    f = [lr_multiplier(k, steps, schedule, warmup, ratio) for k in range(steps)]
    assert f[:warmup] == pytest.approx([(k + 1) / warmup for k in range(warmup)])
    after = f[warmup:]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(after))  # never rises again
    assert all(min(ratio, 1.0) - 1e-12 <= v <= 1.0 + 1e-12 for v in after)
    if after and schedule == "constant":
        assert after == [1.0] * len(after)
    if len(after) > 1 and schedule == "cosine":
        assert after[0] == pytest.approx(1.0) and after[-1] == pytest.approx(ratio)


def test_guard_rate_changes_move_the_base_of_the_schedule() -> None:
    """Halving (NaN) or a rollback under a schedule scales every later scheduled rate."""
    opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    factor = lambda k: lr_multiplier(k, 10, "cosine", 2, 0.1)  # noqa: E731
    sched = make_scheduler(opt, factor)
    for _ in range(4):
        opt.step()
        sched.step()
    set_lr(opt, 0.05, sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * factor(4))
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * factor(5))
    restored = make_scheduler(opt, factor)
    restored.load_state_dict(sched.state_dict())
    assert restored.last_epoch == 5 and restored.base_lrs == [0.05]
