"""How good an engineered context is: requirement precision/recall, exact match, compression.

A context is compared with the gold context line by line (canonical requirement lines, as
multisets): precision = correct lines / lines given, recall = correct lines / gold lines.
Exact match needs the same lines in the same order. Compression = tokens of the context /
tokens of the raw context it was engineered from. Pass rates come from the reconstructor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def requirement_scores(context: str, gold: str) -> dict[str, float]:
    """Precision, recall and exact match of one context against its gold context."""
    given, wanted = _lines(context), _lines(gold)
    common = sum((Counter(given) & Counter(wanted)).values())
    return {
        "precision": common / len(given) if given else 0.0,
        "recall": common / len(wanted) if wanted else 1.0,
        "exact_match": float(given == wanted),
    }


def context_report(
    contexts: Sequence[str],
    golds: Sequence[str],
    pass_rates: Sequence[float],
    context_tokens: Sequence[int],
    raw_tokens: Sequence[int],
) -> dict[str, float]:
    """Mean scores over programs (one context each), rounded for the metrics file."""
    scores = [requirement_scores(c, g) for c, g in zip(contexts, golds, strict=True)]
    rates = np.asarray(pass_rates, dtype=np.float64)
    out = {
        "programs": len(scores),
        "pass_rate": float(rates.mean()),
        "all_tests_pass": float(np.mean(rates == 1.0)),
        "requirement_precision": float(np.mean([s["precision"] for s in scores])),
        "requirement_recall": float(np.mean([s["recall"] for s in scores])),
        "exact_match": float(np.mean([s["exact_match"] for s in scores])),
        "compression": float(np.sum(context_tokens) / np.sum(raw_tokens)),
    }
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}
