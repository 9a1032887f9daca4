"""dvc.yaml declares exactly the code each stage runs, both ways: deps cannot drift from imports.

Each stage's static import closure (its ``stages/<step>.py`` plus the library module that
holds its step, ``reprolab.core.stage.stage_module``) must be covered by the code deps that
DVC resolves for it, so editing any imported file reruns the stage; and every code file a
dep covers must be in that closure, so no edit reruns a stage that never runs the file (an
``__init__.py`` that holds only its docstring carries no code and is left out). The data
deps of the training stages never include ground truth.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from reprolab.core.stage import stage_module
from reprolab.guard.common.deps import PACKAGES, _has_code, import_closure

ROOT = Path(__file__).resolve().parents[2]


def _resolved_stages(dvc_yaml: Path) -> dict[str, tuple[str, list[str]]]:
    """``{"step@item": (cmd, deps)}`` as DVC itself resolves ``foreach`` and ``${...}``."""
    from dvc.parsing import DataResolver
    from dvc.repo import Repo

    with Repo(str(dvc_yaml.parent)) as repo:
        data = yaml.safe_load(dvc_yaml.read_text())
        resolved = DataResolver(repo, str(dvc_yaml.parent), data).resolve()
    return {name: (st["cmd"], list(st.get("deps", []))) for name, st in resolved["stages"].items()}


def _entry_modules(cmd: str) -> tuple[str, list[str]]:
    """``exec python -m stages.<step> [<item>]`` -> (step, the modules the stage imports
    first)."""
    words = cmd.split()
    assert words[0] == "exec", f"{cmd}: `exec` keeps the stage DVC's direct child"
    words = words[1:]
    assert words[:2] == ["python", "-m"] and words[2].startswith("stages."), cmd
    step, item = words[2].removeprefix("stages."), (words[3] if len(words) > 3 else "")
    return step, [words[2], stage_module(step, item)]


def _covers(dep: str, path: Path) -> bool:
    dep_path = Path(dep)
    return path == dep_path or dep_path in path.parents


def _code_deps(deps: list[str]) -> list[str]:
    return [d for d in deps if Path(d).parts[0] in PACKAGES]


def _code_files(dep: str, root: Path) -> list[Path]:
    """The code files under a dep (itself if a file), relative to ``root``, sorted."""
    path = root / dep
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [
        f.relative_to(root)
        for f in files
        if "__pycache__" not in f.parts and (f.name != "__init__.py" or _has_code(f))
    ]


def coverage_problems(dvc_yaml: Path) -> list[str]:
    """One line per imported file no dep covers and per covered file the stage never
    imports, each naming the stage and the file."""
    root = dvc_yaml.parent
    problems = []
    for name, (cmd, deps) in sorted(_resolved_stages(dvc_yaml).items()):
        _, modules = _entry_modules(cmd)
        closure = import_closure(modules, root)
        code = _code_deps(deps)
        for path in closure:
            if not any(_covers(dep, path) for dep in code):
                problems.append(
                    f"{name}: imports {path.as_posix()}, which no dep in dvc.yaml covers"
                )
        imported = set(closure)
        for dep in code:
            for path in _code_files(dep, root):
                if path not in imported:
                    problems.append(
                        f"{name}: dep {dep} covers {path.as_posix()}, which the stage never imports"
                    )
    return problems


def test_every_stage_declares_exactly_the_code_it_imports() -> None:
    assert coverage_problems(ROOT / "dvc.yaml") == []


def test_the_closure_follows_lazy_imports_and_dispatch() -> None:
    closure = import_closure(["stages.train", stage_module("train", "cet")], ROOT)
    as_text = {p.as_posix() for p in closure}
    # Imported inside functions only: a regex or top-level scan would miss them.
    assert "reprolab/guard/torch/ddp.py" in as_text
    assert "reprolab/datasets/contexts/reconstruct.py" in as_text
    assert "reprolab/core/stage.py" in as_text
    assert not any(p.startswith("reprolab/models/mamba/") for p in as_text)


def test_only_the_closing_stages_import_benchmark_or_validate_code() -> None:
    # The data and training stages never run judging or timing code; validate never
    # imports the benchmark (it judges results, the benchmark measures speed).
    stages = _resolved_stages(ROOT / "dvc.yaml")
    assert {"validate", "benchmark"} <= set(stages)
    for name, (cmd, _) in stages.items():
        if name == "benchmark":
            continue
        _, modules = _entry_modules(cmd)
        banned = ("benchmark",) if name == "validate" else ("benchmark", "validate")
        for path in import_closure(modules, ROOT):
            assert path.parts[1] not in banned, f"{name} imports {path}"


def test_no_training_stage_depends_on_ground_truth() -> None:
    for name, (_, deps) in _resolved_stages(ROOT / "dvc.yaml").items():
        if name.startswith("train@"):
            assert not [d for d in deps if d.startswith("data/truth")], name


@pytest.mark.parametrize(
    "stage, dep",
    [
        ("train@cet", "reprolab/guard/${item.framework}"),
        ("features@options", "reprolab/datasets/${item}"),
        ("generate@markets", "reprolab/core"),
        ("split_augment@contexts", "stages/split_augment.py"),
    ],
)
def test_deleting_a_dep_is_caught(tmp_path: Path, stage: str, dep: str) -> None:
    """The check fails, naming the stage and the file, when one dep goes missing."""
    step = stage.split("@")[0]
    problems = _problems_with(tmp_path, lambda data: data["stages"][step]["do"]["deps"].remove(dep))
    assert any(p.startswith(f"{stage}: imports ") for p in problems), problems


def test_an_unused_dep_is_caught(tmp_path: Path) -> None:
    def add_unused(data: dict) -> None:
        data["stages"]["features"]["do"]["deps"].append("reprolab/models/mamba")

    problems = _problems_with(tmp_path, add_unused)
    expected = (
        "features@options: dep reprolab/models/mamba covers reprolab/models/mamba/model.py, "
        "which the stage never imports"
    )
    assert expected in problems


def test_a_folder_dep_holding_a_file_the_stage_never_imports_is_caught(tmp_path: Path) -> None:
    """A library file in a folder a stage declares, which that stage does not import (the
    Pricer beside the PINN's training code, say): the edit would rerun the stage."""

    def widen(data: dict) -> None:
        deps = data["stages"]["benchmark"]["deps"]
        deps[deps.index("reprolab/models/pinn/model.py")] = "reprolab/models/pinn"

    problems = _problems_with(tmp_path, widen)
    expected = (
        "benchmark: dep reprolab/models/pinn covers reprolab/models/pinn/train.py, which the "
        "stage never imports"
    )
    assert expected in problems


def _problems_with(tmp_path: Path, edit: Callable[[dict], None]) -> list[str]:
    """The coverage problems of a copy of the project whose dvc.yaml ``edit`` changed."""
    from dvc.repo import Repo

    data = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    edit(data)
    for name in ("stages", "reprolab"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    Repo.init(str(tmp_path), no_scm=True).close()
    return coverage_problems(tmp_path / "dvc.yaml")


def _library_modules() -> dict[str, list[str]]:
    """``{module: the project modules it imports}`` for every module of the package."""
    from reprolab.guard.common.deps import _imported_modules

    graph = {}
    for path in sorted((ROOT / "reprolab").rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        graph[module] = _imported_modules(path, module)
    return graph


def _stage_modules() -> set[str]:
    from reprolab.core.stage import items_of, stage_module

    steps = ("generate", "split_augment", "features", "data_metrics", "train")
    modules = {stage_module(step, item) for step in steps for item in items_of(step)}
    modules |= {stage_module(step, "") for step in ("walk_forward", "validate", "benchmark")}
    return modules


def test_every_stage_function_lives_in_a_module_named_stage_that_nothing_imports() -> None:
    stages = _stage_modules()
    assert all(m.rpartition(".")[2] == "stage" for m in stages), sorted(stages)
    for module, imported in _library_modules().items():
        for target in imported:
            assert target not in stages, f"{module} imports the stage module {target}"


def test_the_package_has_no_import_cycle() -> None:
    graph = {m: [t for t in targets if t != m] for m, targets in _library_modules().items()}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in graph.get(module, []):
            if target not in graph:
                continue
            assert state.get(target) != 1, " -> ".join([*trail, module, target])
            if target not in state:
                visit(target, [*trail, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
