"""params.yaml is read strictly: what DVC tracks is exactly what the code uses.

A duplicated key, an empty file, a null or missing section or key, and a size with no upper
bound are each one line naming the key; the whole file is checked by the first stage of
dvc.yaml (and by `make repro`) before DVC deletes any stage's outputs.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from reprolab.core.config import (
    CHECK_MARKER,
    CHECK_MARKER_TEXT,
    Params,
    load_params,
    parse_params,
)
from reprolab.core.errors import ValidationError
from tests import tiny

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = [f.name for f in dataclasses.fields(Params)]


@pytest.fixture()
def text() -> str:
    return (ROOT / "params.yaml").read_text()


def _load_error(tmp_path: Path, content: str) -> str:
    (tmp_path / "params.yaml").write_text(content)
    with pytest.raises(ValidationError) as info:
        load_params(tmp_path / "params.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def _line_of(content: str, needle: str) -> int:
    return content.splitlines().index(needle) + 1


def test_a_duplicated_key_names_the_key_and_both_lines(tmp_path: Path, text: str) -> None:
    first = "    n_symbols: 64 # enough training windows (about 100,000) to learn the regime signal"
    assert first in text.splitlines()
    content = text.replace(
        "    wick_scale: 0.5", "    n_symbols: 8 # pasted again\n    wick_scale: 0.5", 1
    )
    message = _load_error(tmp_path, content)
    lines = (_line_of(content, first), _line_of(content, "    n_symbols: 8 # pasted again"))
    assert message.startswith(
        f"{tmp_path / 'params.yaml'}: duplicate key 'markets.generate.n_symbols' "
        f"at lines {lines[0]} and {lines[1]}"
    )


def test_a_duplicated_section_is_an_error_too(tmp_path: Path, text: str) -> None:
    message = _load_error(tmp_path, text + "\nbenchmark:\n  rounds: 1\n")
    assert "duplicate key 'benchmark' at lines" in message


@pytest.mark.parametrize("content", ["", "\n", "# all commented out\n", "---\n"])
def test_an_empty_file_is_an_error(tmp_path: Path, content: str) -> None:
    message = _load_error(tmp_path, content)
    assert "the file is empty; expected the sections seed, resources, markets" in message


def test_a_file_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    assert "expected a mapping of sections" in _load_error(tmp_path, "- seed\n- markets\n")


def _without(text: str, section: str, keep_header: bool) -> str:
    """params.yaml with ``section``'s body (and header unless ``keep_header``) deleted."""
    pattern = rf"(?ms)^{section}:[^\n]*\n(?:(?:[ #][^\n]*)?\n)*"
    replacement = f"{section}:\n" if keep_header else ""
    out, n = re.subn(pattern, replacement, text, count=1)
    assert n == 1, section
    return out


@pytest.mark.parametrize("section", [s for s in SECTIONS if s != "seed"])
def test_a_missing_section_is_an_error(tmp_path: Path, text: str, section: str) -> None:
    message = _load_error(tmp_path, _without(text, section, keep_header=False))
    assert message.startswith(f"params.yaml: {section}: missing section")
    assert "every section and key must be written out" in message


@pytest.mark.parametrize("section", ["markets", "validate", "benchmark"])
def test_a_null_section_is_an_error(tmp_path: Path, text: str, section: str) -> None:
    message = _load_error(tmp_path, _without(text, section, keep_header=True))
    assert message.startswith(f"params.yaml: {section}: empty (null) section; expected its keys")


def test_a_null_inner_section_and_a_missing_key_are_errors(tmp_path: Path, text: str) -> None:
    data = yaml.safe_load(text)
    data["train"]["pinn"]["loss_weights"] = None
    message = _load_error(tmp_path, yaml.safe_dump(data))
    assert message.startswith("params.yaml: train.pinn.loss_weights: empty (null) section")
    data = yaml.safe_load(text)
    del data["seed"]
    message = _load_error(tmp_path, yaml.safe_dump(data))
    assert message.startswith("params.yaml: seed: missing key; every section and key")
    data = yaml.safe_load(text)
    del data["markets"]["generate"]["n_days"]
    message = _load_error(tmp_path, yaml.safe_dump(data))
    assert message.startswith("params.yaml: markets.generate.n_days: missing key")


def test_a_typo_is_reported_as_unknown_before_missing(tmp_path: Path, text: str) -> None:
    message = _load_error(tmp_path, text.replace("    n_symbols: 64", "    n_symbol: 64"))
    assert "markets.generate.n_symbol: unknown key" in message
    assert "did you mean 'n_symbols'" in message


def test_the_schema_holds_no_values() -> None:
    """Values live once, in params.yaml: no field of the schema has a default to drift from
    it, so a partial mapping is refused instead of filled in."""

    def defaults(cls: type, path: str = "") -> typing.Iterator[str]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            where = f"{path}.{f.name}" if path else f.name
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                yield where
            if dataclasses.is_dataclass(hints[f.name]):
                yield from defaults(hints[f.name], where)

    assert list(defaults(Params)) == []
    with pytest.raises(ValidationError, match=r"^params\.yaml: seed: missing key"):
        parse_params({})


def test_the_repository_and_tiny_params_load_strictly(tmp_path: Path) -> None:
    load_params(ROOT / "params.yaml")
    tiny.write_params(tmp_path)
    load_params(tmp_path / "params.yaml")


def _int_fields(cls: type, path: str = "") -> typing.Iterator[tuple[str, dict]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, where = hints[f.name], f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(tp):
            yield from _int_fields(tp, where)
        elif tp is int or typing.get_args(tp) == (int,):
            yield where, dict(f.metadata)


def test_every_integer_param_has_an_upper_bound() -> None:
    # Sizes, counts and steps: a stray extra zero fails at once instead of running for hours.
    unbounded = [p for p, meta in _int_fields(Params) if "le" not in meta and "lt" not in meta]
    assert unbounded == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("contexts.generate.n_programs", 10_000_000),
        ("options.generate.n_contracts", 10**9),
        ("options.features.n_interior", 10**9),
        ("train.pinn.rows_per_epoch", 10**9),
        ("train.pinn.polish_rows", 10**9),
        ("train.cet.scst.val_programs", 10**7),
        ("contexts.features.max_prompt_tokens", 10**7),
        ("markets.split.embargo", 10**7),
        ("resources.memory_budget_mb", 10**9),
    ],
)
def test_an_oversized_value_is_refused_naming_the_key(path: str, value: int) -> None:
    data = tiny.params_dict()
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    with pytest.raises(ValidationError, match=rf"^params\.yaml: {re.escape(path)} = {value}: "):
        parse_params(data)


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_check_prints_one_line_and_writes_a_marker_that_ignores_values(
    tmp_path: Path, text: str
) -> None:
    (tmp_path / "params.yaml").write_text(text.replace("n_programs: 1500", "n_programs: 10000000"))
    # what `make repro` runs before DVC starts
    check = "import sys; from reprolab.core.config import check_params; sys.exit(check_params())"
    assert check in (ROOT / "Makefile").read_text()
    bad = _python(["-c", check], tmp_path)
    assert bad.returncode == ValidationError.exit_code
    assert bad.stderr.strip().splitlines() == [
        "error: check_params: invalid input: params.yaml: contexts.generate.n_programs = "
        "10000000: expected an integer >= 30 and <= 100000"
    ]
    marker = tmp_path / CHECK_MARKER
    for n_programs in (1500, 60):
        tiny.write_params(tmp_path, contexts={"generate": {"n_programs": n_programs}})
        ok = _python(["-m", "stages.check_params"], tmp_path)
        assert ok.returncode == 0, ok.stderr
        # Constant bytes: a rerun of the check never reruns the stages that depend on it.
        assert marker.read_text() == CHECK_MARKER_TEXT


def test_every_stage_runs_after_the_whole_params_check() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    check = stages["check_params"]
    assert check["params"] == [{"params.yaml": None}]  # every param in the file
    assert check["outs"] == [CHECK_MARKER.as_posix()]
    for name, stage in stages.items():
        if name != "check_params":
            assert CHECK_MARKER.as_posix() in stage.get("do", stage)["deps"], name
