"""Decoding and scoring: greedy labels per line, grouped by program, and the pass rate
of the program the reconstructor rebuilds from an engineered context."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reprolab.core.config import CetTrainParams
from reprolab.models.cet.data import Data


class Decoder:
    """Greedy labels for line prompts, as text, in batches of ``eval_batch_size``; and the
    engineered context of whole programs (their lines' labels, assembled)."""

    def __init__(self, model: Any, tokenizer: Any, ids: dict[str, int], t: CetTrainParams):
        self.model, self.tokenizer, self.ids, self.t = model, tokenizer, ids, t

    def ids_to_text(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(
            [i for i in ids if i != self.ids["eos"]], skip_special_tokens=True
        )

    def greedy(self, prompts: Sequence[list[int]]) -> list[list[int]]:
        from reprolab.models.cet.model import generate

        out: list[list[int]] = []
        size = self.t.eval_batch_size
        for i in range(0, len(prompts), size):
            out.extend(
                generate(
                    self.model,
                    prompts[i : i + size],
                    max_new_tokens=self.t.max_new_tokens,
                    eos_id=self.ids["eos"],
                    pad_id=self.ids["pad"],
                    greedy=True,
                )
            )
        return out

    def labels(self, data: Data, programs: Sequence[int]) -> list[list[str]]:
        """The greedy label of every line of ``programs``, grouped by program."""
        texts = [
            self.ids_to_text(o)
            for o in self.greedy([data.prompts[i] for i in data.lines(programs)])
        ]
        return group_labels(data, programs, texts)


def group_labels(data: Data, programs: Sequence[int], texts: Sequence[str]) -> list[list[str]]:
    """Flat per-line texts (``data.lines(programs)`` order) split back into programs."""
    out, start = [], 0
    for p in programs:
        n = data.spans[p][1] - data.spans[p][0]
        out.append(list(texts[start : start + n]))
        start += n
    return out


def pass_rates(reconstructor: Any, contexts: Sequence[str], tests: Sequence[str]) -> list[float]:
    return reconstructor.score_many(list(zip(contexts, tests, strict=True)))
