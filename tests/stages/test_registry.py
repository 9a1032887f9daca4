"""The registry (reprolab/core/registry.py) is the one list of datasets, models and gate
sections: dvc.yaml's foreach lists, the resource files validate and benchmark read, the
release gates and validate.json's sections all agree with it."""

from __future__ import annotations

from pathlib import Path

import yaml

from reprolab.core import paths, registry
from reprolab.core.stage import JUDGED_STAGES, items_of
from reprolab.release import gates

ROOT = Path(__file__).resolve().parents[2]


def _stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_data_step_runs_for_exactly_the_registered_datasets() -> None:
    stages = _stages()
    for step in registry.DATA_STEPS:
        assert stages[step]["foreach"] == list(registry.DATASETS), step
        assert items_of(step) == registry.DATASETS


def test_train_runs_for_exactly_the_registered_models_with_their_dataset_and_framework() -> None:
    items = _stages()["train"]["foreach"]
    assert list(items) == list(registry.MODELS)
    for name, model in registry.MODELS.items():
        assert items[name] == {"data": model.dataset, "framework": model.framework}
        assert (ROOT / "reprolab" / "guard" / model.framework).is_dir()
        assert paths.DATASET_OF[name] == model.dataset == registry.dataset_of(name)
    assert items_of("train") == tuple(registry.MODELS)


def test_validate_and_benchmark_read_the_resources_of_every_stage_before_them() -> None:
    stages = _stages()
    expected = {f"metrics/resources/{stage}.json" for stage in JUDGED_STAGES}
    names = {
        *(f"{step}_{d}" for step in registry.DATA_STEPS for d in registry.DATASETS),
        *(f"train_{m}" for m in registry.MODELS),
        "walk_forward",
    }
    assert set(JUDGED_STAGES) == names
    for closing in ("validate", "benchmark"):
        deps = {d for d in stages[closing]["deps"] if d.startswith("metrics/resources/")}
        assert deps == expected, closing


def test_the_release_gates_and_validate_sections_follow_the_registry() -> None:
    assert gates.ORDER == registry.GATE_SECTIONS == ("data", "resources", *registry.MODELS)
    assert set(gates.SECTIONS) == set(registry.MODELS)
    for model, sections in gates.SECTIONS.items():
        assert sections == (*registry.SHARED_SECTIONS, model)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    gated = [s for s in params["validate"] if isinstance(params["validate"][s], dict)]
    assert [s for s in gated if s in registry.GATE_SECTIONS] == list(registry.GATE_SECTIONS)
