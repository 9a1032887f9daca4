"""Seed discipline: one ``seed`` in params.yaml, one independent stream per named purpose.

Streams are keyed by names (stage, dataset, symbol, ...), not by position, so adding a
symbol or a stage never changes the numbers another one draws.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _key_to_int(key: str | int) -> int:
    digest = hashlib.sha256(str(key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def seed_sequence(seed: int, *keys: str | int) -> np.random.SeedSequence:
    """The SeedSequence for ``keys`` under the global ``seed`` (a spawn key made of names)."""
    return np.random.SeedSequence(entropy=seed, spawn_key=tuple(_key_to_int(k) for k in keys))


def rng(seed: int, *keys: str | int) -> np.random.Generator:
    """An independent generator for ``keys``; same seed and keys give the same stream."""
    return np.random.default_rng(seed_sequence(seed, *keys))


def int_seed(seed: int, *keys: str | int) -> int:
    """A 32-bit integer seed for libraries that take one (scipy's Sobol, frameworks)."""
    return int(seed_sequence(seed, *keys).generate_state(1, dtype=np.uint32)[0])
