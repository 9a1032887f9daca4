"""The CET's tokenised splits (one unit per raw line) and its seeded batch draws."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from reprolab.core.seeding import rng
from reprolab.datasets.contexts.render import OTHER_PROGRAM_ROLES


class Data:
    """A tokenised split: the CET's unit is one raw line (prompt ids, target ids, flattened
    over the split's programs); the programs keep their tests and gold context.

    ``encode`` (a function of raw, name, labels) re-tokenises the texts: a base model named in
    ``train.cet.base_model`` brings its own tokenizer, which the stored ids do not match.
    """

    def __init__(self, frame: pd.DataFrame, encode: Any = None) -> None:
        self.frame = frame.reset_index(drop=True)
        if encode is None:
            per_program = zip(
                self.frame["line_prompt_ids"], self.frame["line_target_ids"], strict=True
            )
        else:
            encoded = [
                encode(r, n, json.loads(labels))
                for r, n, labels in zip(
                    self.frame["raw"], self.frame["name"], self.frame["line_labels"], strict=True
                )
            ]
            per_program = ((e["prompt_ids"], e["target_ids"]) for e in encoded)
        prompts: list[list[int]] = []
        targets: list[list[int]] = []
        self.spans: list[tuple[int, int]] = []  # each program's lines: prompts[start:end]
        for program_prompts, program_targets in per_program:
            start = len(prompts)
            prompts.extend(list(map(int, p)) for p in program_prompts)
            targets.extend(list(map(int, t)) for t in program_targets)
            self.spans.append((start, len(prompts)))
        # Lines that name another program: they look like requirements and carry no label.
        other_program = np.array(
            [r in OTHER_PROGRAM_ROLES for x in self.frame["line_roles"] for r in json.loads(x)]
        )
        self._set_lines(prompts, targets, other_program)
        self.tests = list(self.frame["tests"])
        self.gold = list(self.frame["gold"])
        self.names = list(self.frame["name"])

    @classmethod
    def from_lines(
        cls, prompts: list[list[int]], targets: list[list[int]], other_program: np.ndarray
    ) -> Data:
        """Lines only, without programs (a DDP rank needs no more to draw its batches)."""
        data = cls.__new__(cls)
        data._set_lines(prompts, targets, other_program)
        return data

    def _set_lines(
        self, prompts: list[list[int]], targets: list[list[int]], other_program: np.ndarray
    ) -> None:
        self.prompts, self.targets, self.other_program = prompts, targets, other_program
        self.labelled = np.array([len(t) > 1 for t in targets], dtype=bool)  # more than eos

    def __len__(self) -> int:
        """The number of lines (supervised examples)."""
        return len(self.prompts)

    @property
    def programs(self) -> int:
        return len(self.spans)

    def lines(self, programs: Sequence[int]) -> list[int]:
        """The line indices of ``programs``, program by program, in line order."""
        return [i for p in programs for i in range(*self.spans[p])]

    def batch(
        self, seed: int, phase: str, step: int, size: int, weights: tuple[float, float] = (1, 1)
    ) -> np.ndarray:
        """Line indices of ``step``: a function of (seed, phase, step) only, so resumable.

        ``weights = (label, other_program)``: a line that carries a label, and one that names
        another program, is that many times as likely to be drawn as noise.
        """
        p = None
        if tuple(weights) != (1, 1):
            p = np.where(self.labelled, weights[0], np.where(self.other_program, weights[1], 1.0))
        return draw(seed, phase, step, size, len(self), p)

    def program_batch(self, seed: int, phase: str, step: int, size: int) -> np.ndarray:
        """Program indices of ``step`` (SCST rewards whole programs)."""
        return draw(seed, phase, step, size, self.programs)


def draw(
    seed: int, phase: str, step: int, size: int, n: int, weights: np.ndarray | None = None
) -> np.ndarray:
    gen = rng(seed, "cet", phase, step)
    p = None if weights is None else weights / weights.sum()
    return np.sort(gen.choice(n, size=min(size, n), replace=False, p=p))


def micro_batches(rows: np.ndarray, micro_batch: int) -> Iterator[np.ndarray]:
    for i in range(0, len(rows), micro_batch):
        yield rows[i : i + micro_batch]
