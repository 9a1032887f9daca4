"""params.yaml is validated before any work, with one line naming key, value and expectation."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reprolab.core.config import load_params, parse_params, to_dict
from reprolab.core.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_yaml_is_valid_and_lists_every_key(raw: dict) -> None:
    # Every schema key is spelled out in params.yaml (the schema has no values to fall back
    # on), so DVC tracks every value.
    assert to_dict(parse_params(raw)) == raw


def test_a_value_tuned_in_params_yaml_alone_loads_and_is_used(tmp_path: Path, raw: dict) -> None:
    """A user commits a tuned value in params.yaml and nothing else: it validates, and it is
    the value the stages read (no copy of it elsewhere to agree with)."""
    data = copy.deepcopy(raw)
    data["train"]["mamba"]["epochs"] = raw["train"]["mamba"]["epochs"] + 7
    data["markets"]["generate"]["regimes"]["stay"][0] = 0.975
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    tuned = load_params(tmp_path / "params.yaml")
    assert tuned.train.mamba.epochs == raw["train"]["mamba"]["epochs"] + 7
    assert tuned.markets.generate.regimes.stay[0] == 0.975
    assert to_dict(tuned) == data


def _error(raw: dict, path: str, value: object) -> str:
    data = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    with pytest.raises(ValidationError) as info:
        parse_params(data)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("markets.generate.n_symbols", -3, "expected an integer >= 1"),
        ("markets.generate.n_symbols", 2.5, "expected an integer"),
        ("markets.generate.n_symbols", True, "expected an integer"),
        ("markets.generate.n_symbols", "8", "expected an integer"),
        ("options.generate.domain.sigma_max", float("nan"), "a finite number"),
        ("options.generate.sampler", "halton", "one of 'sobol', 'uniform'"),
        ("resources.progress", "yes", "true or false"),
        ("markets.split.train", 1.5, "< 1.0"),
        ("markets.generate.regimes.phi", [0.3, -1.2, 0.0], "> -1.0"),
        ("markets.generate.regimes.sigma", "0.01", "a list of"),
        ("markets.generate", [1, 2], "a mapping"),
    ],
)
def test_wrong_type_or_range_names_key_and_value(
    raw: dict, path: str, value: object, expected: str
) -> None:
    message = _error(raw, path, value)
    assert message.startswith(f"params.yaml: {path}")
    assert expected in message


def test_unknown_key_suggests_the_right_one(raw: dict) -> None:
    data = copy.deepcopy(raw)
    data["markets"]["generate"]["n_symbol"] = 4
    with pytest.raises(
        ValidationError,
        match=r"markets\.generate\.n_symbol: unknown key.*"
        r"did you mean 'n_symbols'",
    ):
        parse_params(data)


def test_cross_field_rules(raw: dict) -> None:
    assert "markets.split.embargo" in _error(raw, "markets.split.embargo", 30)
    assert "sum to 1" in _error(raw, "markets.split.val", 0.2)
    assert "regime" in _error(raw, "markets.generate.regimes.stay", [0.9, 0.9])
    assert "scale_max" in _error(raw, "markets.split.augment.scale_min", 2.0)
    assert "heldout" in _error(raw, "options.split.heldout.low", 0.01)
    assert "start_date" in _error(raw, "markets.generate.start_date", "not a date")
    assert "min_steps" in _error(raw, "contexts.generate.min_steps", 5)
    assert "multiple of num_heads" in _error(raw, "train.cet.model.hidden_size", 130)
    assert "divisor of num_heads" in _error(raw, "train.cet.model.num_kv_heads", 3)
    assert "train.cet.adapter.method" in _error(raw, "train.cet.adapter.method", "dora")
    assert "<= steps = 400" in _error(raw, "train.cet.sft.warmup_steps", 401)
    assert "train.cet.scst.schedule" in _error(raw, "train.cet.scst.schedule", "linear")
    ddp = copy.deepcopy(raw)
    ddp["train"]["cet"].update(distributed="ddp", nproc=100)
    with pytest.raises(ValidationError, match=r"train\.cet\.sft\.batch_size = 64: .*nproc = 100"):
        parse_params(ddp)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: [1\n")
    with pytest.raises(ValidationError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ValidationError, match="file not found"):
        load_params(tmp_path / "absent.yaml")


def test_stage_exits_nonzero_with_one_line(tmp_path: Path, raw: dict) -> None:
    data = copy.deepcopy(raw)
    data["markets"]["generate"]["n_symbols"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [sys.executable, "-m", "stages.generate", "markets"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == ValidationError.exit_code
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "error: generate@markets: invalid input: params.yaml: markets.generate.n_symbols = 0: "
        "expected an integer >= 1 and <= 100000 (after fixing it: `dvc checkout "
        "generate@markets` restores the cached outputs `dvc repro` removed, `dvc repro` the rest)"
    ]
    assert not (tmp_path / "data").exists()  # nothing was written before validation


def test_stage_rejects_unknown_item(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stages.generate", "bonds"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == ValidationError.exit_code
    assert "item must be one of markets, options" in proc.stderr
    assert "Traceback" not in proc.stderr
