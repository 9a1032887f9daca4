"""train@cet on a tiny world: deterministic, resumable, rollbacks, reloadable artefacts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reprolab.build.contexts import stage as contexts
from reprolab.core.config import load_params
from reprolab.core.errors import DependencyError
from reprolab.core.resources import StageResources
from reprolab.guard.common.signals import TrainingInterrupted
from reprolab.models.cet import stage as cet_stage
from reprolab.models.cet import train as cet
from tests import tiny

ROOT = Path(__file__).resolve().parents[2]


def _write_params(directory: Path, **cet_over: Any) -> None:
    tiny.write_params(directory, train={"cet": cet_over})


def _train(directory: Path) -> None:
    with contextlib.chdir(directory):
        params = load_params()
        with StageResources("train@cet", show_progress=False) as res:
            cet_stage.train(params, res)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny contexts data, and one trained CET, in a directory of its own."""
    directory = tmp_path_factory.mktemp("cet")
    _write_params(directory)
    with contextlib.chdir(directory):
        params = load_params()
        for step in ("generate", "split_augment", "features"):
            with StageResources(f"{step}@contexts", show_progress=False) as res:
                getattr(contexts, step)(params, res)
    _train(directory)
    return directory


def _copy_data(world: Path, other: Path) -> None:
    (other / "data").symlink_to(world / "data")


def _fingerprint(directory: Path) -> dict[str, str]:
    files = ["models/cet/adapter/adapter_model.safetensors", "metrics/train/cet/metrics.json"]
    return {f: hashlib.sha256((directory / f).read_bytes()).hexdigest() for f in files}


def _metrics(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "metrics/train/cet/metrics.json").read_text())


@pytest.mark.slow
def test_stage_writes_every_output_and_every_baseline(world: Path) -> None:
    m = _metrics(world)
    assert set(m["test"]) == {"cet", "gold", "raw", "heuristic", "none"}
    assert m["test"]["gold"]["pass_rate"] == 1.0 and m["test"]["gold"]["exact_match"] == 1.0
    assert m["test"]["raw"]["compression"] == 1.0 and m["test"]["none"]["compression"] == 0.0
    for method in ("lora", "qlora"):
        share = m["adapters"][method]["trainable_share"]
        assert 0 < share < 1
    assert [c["step"] for c in m["scst"]["curve"]] == [0, 1, 2, 3]
    speed = json.loads((world / "metrics/train/cet/speed.json").read_text())
    assert set(speed["phase_seconds"]) == {"pretrain", "sft", "scst"}
    for method in ("lora", "qlora"):
        assert speed["adapters"][method]["peak_rss_growth_mib"] >= 0, method
        assert speed["adapters"][method]["train_tokens_per_s"] > 0, method
    live = world / "metrics/train/cet/live/plots/metrics"
    for phase in ("pretrain", "sft", "scst", "scst_val"):
        assert (live / phase).is_dir(), phase
    assert (live / "scst" / "cache_hit_rate.tsv").exists()
    assert not (world / cet.CHECKPOINTS).exists()  # cleaned up after success
    for key in ("line_accuracy", "requirement_line_accuracy"):
        assert 0 <= m["test"]["cet"][key] <= 1, key


def _train_data(world: Path) -> cet.Data:
    with contextlib.chdir(world):
        return cet.Data(contexts.read_features("train"))


@pytest.mark.slow
def test_data_holds_every_line_of_every_program_in_order(world: Path) -> None:
    data = _train_data(world)
    raws = list(data.frame["raw"])
    assert data.programs == len(raws)
    assert len(data) == sum(len(r.split("\n")) for r in raws)
    assert data.lines([2, 0]) == [*range(*data.spans[2]), *range(*data.spans[0])]
    for p in (0, data.programs - 1):  # a line carries a label iff its generator label is set
        labels = json.loads(data.frame["line_labels"][p])
        assert list(data.labelled[slice(*data.spans[p])]) == [bool(x) for x in labels]
    again = cet.Data.from_lines(data.prompts, data.targets, data.other_program)
    assert list(again.labelled) == list(data.labelled)
    assert list(again.batch(7, "sft", 0, 16, (4, 2))) == list(data.batch(7, "sft", 0, 16, (4, 2)))


@pytest.mark.slow
def test_line_weights_draw_labelled_lines_and_other_programs_more_often(world: Path) -> None:
    data = _train_data(world)
    labelled = data.labelled
    assert not (labelled & data.other_program).any()  # another program's line says nothing

    def shares(weights: tuple[float, float]) -> tuple[float, float]:
        rows = [r for k in range(40) for r in data.batch(7, "sft", k, 16, weights)]
        return float(np.mean(labelled[rows])), float(np.mean(data.other_program[rows]))

    (lab, other), (lab8, other1) = shares((1, 1)), shares((8, 1))
    assert lab < 0.5 < lab8 and other1 < other
    assert shares((1, 8))[1] > 0.5 > other
    again = data.batch(7, "sft", 3, 16, (8, 8))  # a function of (seed, phase, step) only
    assert list(again) == list(data.batch(7, "sft", 3, 16, (8, 8)))
    assert len(set(again)) == len(again)  # without replacement


@pytest.mark.slow
def test_two_runs_give_identical_adapters_and_metrics(world: Path, tmp_path: Path) -> None:
    _copy_data(world, tmp_path)
    _write_params(tmp_path)
    _train(tmp_path)
    assert _fingerprint(tmp_path) == _fingerprint(world)


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_adapter(world: Path, tmp_path: Path) -> None:
    _copy_data(world, tmp_path)
    _write_params(tmp_path)
    original = cet.CetTrainer.log
    calls = {"n": 0}

    def log_then_signal(self: cet.CetTrainer, phase: str, logs: dict[str, float]) -> None:
        original(self, phase, logs)
        calls["n"] += 1
        if phase == "sft" and calls["n"] == 6:  # mid-SFT: pretrain logged 4 steps
            os.kill(os.getpid(), signal.SIGTERM)

    cet.CetTrainer.log = log_then_signal  # type: ignore[method-assign]
    try:
        with pytest.raises(TrainingInterrupted, match=r"sft: interrupted \(SIG(TERM|INT)\)"):
            _train(tmp_path)
    finally:
        cet.CetTrainer.log = original  # type: ignore[method-assign]
    assert (tmp_path / cet.CHECKPOINTS / "pretrain.pt").exists()
    _train(tmp_path)
    adapter = "models/cet/adapter/adapter_model.safetensors"
    assert _fingerprint(tmp_path)[adapter] == _fingerprint(world)[adapter]
    resumed, clean = _metrics(tmp_path), _metrics(world)
    assert any("resumed" in e for e in resumed["events"])
    # Only the story differs: the events, and the reconstruction cache started empty again.
    for key in ("events", "cache_hit_rate"):
        resumed.pop(key), clean.pop(key)
    assert resumed == clean


@pytest.mark.slow
def test_a_falling_validation_rate_rolls_back(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy_data(world, tmp_path)
    _write_params(tmp_path, scst={"rollback_floor": 0.7, "rollback_margin": 0.05})
    rates = iter([0.8, 0.9, 0.5, 0.9])  # start, step 1 (best), step 2 (falls), step 3
    monkeypatch.setattr(cet.CetTrainer, "val_pass_rate", lambda self, d, rows: next(rates))
    _train(tmp_path)
    m = _metrics(tmp_path)
    assert m["scst"]["rollbacks"] == 1 and m["scst"]["val_pass_rate_best"] == 0.9
    assert any("step 2: validation pass rate 0.500 below the floor" in e for e in m["events"])
    val = tmp_path / "metrics/train/cet/live/plots/metrics/scst_val/rollbacks.tsv"
    assert float(val.read_text().split()[-1]) == 1
    lrs = (tmp_path / "metrics/train/cet/live/plots/metrics/scst/learning_rate.tsv").read_text()
    assert float(lrs.split()[-1]) == pytest.approx(0.0002 * 0.5)


@pytest.mark.slow
def test_saved_base_and_adapter_reload_with_from_pretrained(world: Path) -> None:
    import torch
    from peft import PeftModel

    from reprolab.datasets.contexts.features import load_tokenizer
    from reprolab.models.cet.model import load_base_model

    base = load_base_model(world / "models/cet/base")
    tok = load_tokenizer(str(world / "models/cet/base"))
    model = PeftModel.from_pretrained(base, world / "models/cet/adapter", is_trainable=True)
    assert any(p.requires_grad for p in model.parameters())
    ids = torch.tensor([tok.encode("task: x\nsort ascending")])
    assert torch.isfinite(model(input_ids=ids).logits).all()


@pytest.mark.slow
def test_base_model_param_loads_a_saved_directory_or_says_how(world: Path, tmp_path: Path) -> None:
    _copy_data(world, tmp_path)
    _write_params(tmp_path, base_model=str(world / "models/cet/base"))
    _train(tmp_path)
    assert _metrics(tmp_path)["test"]["gold"]["pass_rate"] == 1.0
    _write_params(tmp_path, base_model=str(tmp_path / "no_such_model"))
    with pytest.raises(DependencyError, match=r"train\.cet\.base_model = .*no_such_model"):
        _train(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_ddp_path_trains_sft_in_two_gloo_processes(
    world: Path, tmp_path: Path, method: str
) -> None:
    """The ranks train the very adapters the stage attached (QLoRA too) and agree."""
    _copy_data(world, tmp_path)
    _write_params(tmp_path, distributed="ddp", nproc=2, adapter={"method": method})
    _train(tmp_path)  # the ranks check that they end with identical weights
    m = _metrics(tmp_path)
    assert f"sft: data-parallel over 2 processes ({method})" in m["events"]
    assert m["adapter_method"] == method
    sft = (tmp_path / "metrics/train/cet/live/plots/metrics/sft/loss.tsv").read_text()
    assert len(sft.split("\n")) - 2 == tiny.CET["sft"]["steps"]


@pytest.mark.slow
def test_phases_follow_their_learning_rate_schedule(world: Path) -> None:
    """The logged rate of each step is the peak times the phase's schedule factor."""
    from reprolab.guard.common.schedule import lr_multiplier

    live = world / "metrics/train/cet/live/plots/metrics"
    params = load_params(world / "params.yaml").train.cet
    for phase in ("pretrain", "sft"):
        p = getattr(params, phase)
        assert p.schedule == "cosine" and p.warmup_steps == 2
        rows = (live / phase / "lr.tsv").read_text().splitlines()[1:]
        lrs = [float(row.split()[-1]) for row in rows]
        want = [
            p.learning_rate * lr_multiplier(k, p.steps, "cosine", 2, 0.1) for k in range(p.steps)
        ]
        assert lrs == pytest.approx(want, rel=1e-6), phase
        assert lrs[0] < lrs[1] > lrs[-1]  # warm-up, then decay


@pytest.mark.slow
def test_scst_out_of_memory_halves_its_micro_batch(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An out-of-memory error while sampling makes SCST run its batch in smaller passes."""
    from reprolab.models.cet import model as cet_model

    _copy_data(world, tmp_path)
    _write_params(tmp_path)
    real, failed = cet_model.generate, []

    def generate(model: Any, prompts: Any, **kw: Any) -> Any:
        if not kw["greedy"] and len(prompts) > 1 and not failed:
            failed.append(len(prompts))
            raise RuntimeError("CPU out of memory: tried to allocate 9 GB")
        return real(model, prompts, **kw)

    monkeypatch.setattr(cet_model, "generate", generate)
    _train(tmp_path)
    m = _metrics(tmp_path)
    assert len(failed) == 1  # the first sampling pass (every line of both programs) failed
    assert any("scst: step 1: out of memory; micro-batch halved to 1" in e for e in m["events"])
    rewards = tmp_path / "metrics/train/cet/live/plots/metrics/scst/reward_sample.tsv"
    assert len(rewards.read_text().split("\n")) - 2 == tiny.CET["scst"]["steps"]


@pytest.mark.slow
def test_ddp_sft_stops_on_a_signal_and_resumes_to_the_same_adapter(
    world: Path, tmp_path: Path
) -> None:
    """SIGTERM to the stage reaches the ranks, which stop after one same step with a
    checkpoint; the rerun resumes there and ends with the adapter of an uninterrupted run."""
    import threading
    import time

    ddp = {"distributed": "ddp", "nproc": 2, "sft": {"steps": 40}, "checkpoint_every": 2}
    clean, hit = tmp_path / "clean", tmp_path / "hit"
    for directory in (clean, hit):
        directory.mkdir()
        _copy_data(world, directory)
        _write_params(directory, **ddp)
    _train(clean)

    checkpoint = hit / cet.CHECKPOINTS / "sft_ddp.pt"

    def signal_after_the_first_checkpoint() -> None:
        deadline = time.monotonic() + 300
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=signal_after_the_first_checkpoint)
    thread.start()
    try:
        with pytest.raises(TrainingInterrupted, match=r"sft: interrupted \(SIGTERM\) after"):
            _train(hit)
    finally:
        thread.join()
    _train(hit)
    adapter = "models/cet/adapter/adapter_model.safetensors"
    assert _fingerprint(hit)[adapter] == _fingerprint(clean)[adapter]
    assert any("sft: resumed from" in e for e in _metrics(hit)["events"])
