"""Decoding and scoring: greedy labels per line, grouped by program, and the pass rate
of the program the reconstructor rebuilds from an engineered context."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from reprolab.core.config import CetTrainParams
from reprolab.datasets.contexts.read import baseline_contexts
from reprolab.datasets.contexts.render import assemble_context
from reprolab.models.cet.data import Data
from reprolab.models.cet.metrics import context_report


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


def evaluate_contexts(decoder: Decoder, reconstructor: Any, data: Data) -> dict[str, Any]:
    """The CET's engineered contexts and every baseline's on ``data``, scored by the
    reconstructor: pass rate, compression and gold recall per context source, and how
    often the CET labels a line exactly right. Training and validate share this scoring."""
    programs = range(data.programs)
    labels = decoder.labels(data, programs)
    gold_labels = [json.loads(x) for x in data.frame["line_labels"]]
    pairs = [
        (a, b)
        for ps, gs in zip(labels, gold_labels, strict=True)
        for a, b in zip(ps, gs, strict=True)
    ]
    contexts = {"cet": [assemble_context(x) for x in labels]}
    contexts.update(baseline_contexts(data.frame))

    def tokens(text: str) -> int:
        return len(decoder.tokenizer.encode(text, add_special_tokens=False))

    raw_tokens = [tokens(x) for x in data.frame["raw"]]
    report: dict[str, Any] = {}
    for name, texts in contexts.items():
        rates = pass_rates(reconstructor, texts, data.tests)
        report[name] = context_report(
            texts, data.gold, rates, [tokens(x) for x in texts], raw_tokens
        )
    # How often the CET's label of a line is exactly right (most lines' label is empty).
    report["cet"]["line_accuracy"] = round(float(np.mean([a == b for a, b in pairs])), 4)
    relevant = [(a, b) for a, b in pairs if b]
    report["cet"]["requirement_line_accuracy"] = round(
        float(np.mean([a == b for a, b in relevant])) if relevant else 1.0, 4
    )
    return report
