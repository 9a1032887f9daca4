"""The contexts stages: split by template, augment training only, tokenizer fit on train only."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pandas as pd
import pytest

from reprolab.build.contexts import stage as contexts
from reprolab.core.config import load_params
from reprolab.core.resources import StageResources
from tests import tiny

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("contexts")
    tiny.write_params(directory)
    with contextlib.chdir(directory):
        p = load_params()
        for step in ("generate", "split_augment", "features", "data_metrics"):
            with StageResources(f"{step}@contexts", show_progress=False) as res:
                getattr(contexts, step)(p, res)
    return directory


def _split(built: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(built / "data/split/contexts" / f"{name}.parquet")


def test_templates_never_cross_splits_and_every_program_lands_once(built: Path) -> None:
    parts = {n: _split(built, n) for n in ("train", "val", "test")}
    hashes = {n: set(f["template_hash"]) for n, f in parts.items()}
    assert not hashes["train"] & hashes["val"] and not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]
    raw = pd.read_parquet(built / "data/raw/contexts/samples.parquet")
    originals = pd.concat([f[f["copy"] == 0] for f in parts.values()])
    assert sorted(originals["program_id"]) == sorted(raw["program_id"])  # none lost


def test_only_training_programs_are_augmented(built: Path) -> None:
    train = _split(built, "train")
    assert (train["copy"] > 0).sum() == (train["copy"] == 0).sum()  # one copy each (tiny)
    for name in ("val", "test"):
        assert (_split(built, name)["copy"] == 0).all()
    copies = train[train["copy"] > 0].set_index("program_id")
    firsts = train[train["copy"] == 0].set_index("program_id")
    assert (copies["gold"] == firsts.loc[copies.index, "gold"]).all()
    assert (copies["raw"] != firsts.loc[copies.index, "raw"]).all()


def test_tokenizer_is_fit_on_the_training_split_only(built: Path) -> None:
    from reprolab.datasets.contexts.features import train_tokenizer

    f = load_params(built / "params.yaml").contexts.features
    saved = json.loads((built / "data/features/contexts/tokenizer/tokenizer.json").read_text())
    train = _split(built, "train")
    own = train_tokenizer([*train["raw"], *train["gold"]], f.vocab_size, f.min_frequency)
    everything = pd.concat([_split(built, n) for n in ("train", "val", "test")])
    leaky = train_tokenizer(
        [*everything["raw"], *everything["gold"]], f.vocab_size, f.min_frequency
    )
    assert saved["model"]["merges"] == json.loads(own.backend_tokenizer.to_str())["model"]["merges"]
    assert (
        saved["model"]["merges"] != json.loads(leaky.backend_tokenizer.to_str())["model"]["merges"]
    )


def test_data_metrics_report_lengths_and_the_baseline_ceiling(built: Path) -> None:
    report = json.loads((built / "metrics/data/contexts.json").read_text())
    assert report["template_hashes_disjoint"] is True
    for name in ("train", "val", "test"):
        entry = report[name]
        assert entry["pass_rate"]["gold"] == 1.0
        rates = entry["pass_rate"]
        assert rates["raw"] < 0.2 and rates["raw"] <= rates["heuristic"] <= rates["gold"]
        assert entry["target_tokens"]["max"] < entry["prompt_tokens"]["mean"]
