"""Options split: seeded, chunk-independent, held-out band in test only."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from reprolab.build.options.split import split_options
from reprolab.core.seeding import rng
from reprolab.datasets.options.generate import generate_options
from tests.tiny import repo_params


def _contracts(n: int = 20_000) -> pd.DataFrame:
    params = replace(repo_params().options.generate, n_contracts=n, chunk_rows=n)
    return pd.concat(generate_options(params, seed=3), ignore_index=True)


def _split(contracts: pd.DataFrame, chunk: int, seed: int = 5) -> dict[str, pd.DataFrame]:
    gen = rng(seed, "options", "split")
    pieces = [
        split_options(contracts.iloc[i : i + chunk], repo_params().options.split, gen)
        for i in range(0, len(contracts), chunk)
    ]
    return {k: pd.concat([p[k] for p in pieces], ignore_index=True) for k in pieces[0]}


def test_every_contract_lands_in_exactly_one_split() -> None:
    contracts = _contracts()
    parts = _split(contracts, len(contracts))
    ids = np.concatenate([p["contract_id"].to_numpy() for p in parts.values()])
    assert np.array_equal(np.sort(ids), contracts["contract_id"].to_numpy())


def test_heldout_band_goes_to_test_only_and_is_tagged() -> None:
    h = repo_params().options.split.heldout
    parts = _split(_contracts(), 20_000)
    for name in ("train", "val"):
        assert not parts[name][h.column].between(h.low, h.high).any()
        assert (parts[name]["region"] == "domain").all()
    test = parts["test"]
    in_band = test[h.column].between(h.low, h.high)
    assert in_band.any() and (test.loc[in_band, "region"] == "heldout").all()
    assert (test.loc[~in_band, "region"] == "domain").all()


def test_fractions_hold_outside_the_band() -> None:
    parts = _split(_contracts(), 20_000)
    sizes = {k: int((v["region"] == "domain").sum()) for k, v in parts.items()}
    total = sum(sizes.values())
    p = repo_params().options.split
    for name, frac in (("train", p.train), ("val", p.val), ("test", p.test)):
        assert abs(sizes[name] / total - frac) < 0.02


def test_split_is_seeded_and_independent_of_chunking() -> None:
    contracts = _contracts()
    whole = _split(contracts, len(contracts))
    chunked = _split(contracts, 3_333)
    for name in whole:
        pd.testing.assert_frame_equal(whole[name], chunked[name])
    other = _split(contracts, len(contracts), seed=6)
    assert not whole["train"]["contract_id"].equals(other["train"]["contract_id"])
