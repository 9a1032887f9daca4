"""The shared shape of every stage entry point.

``python -m stages.<step> <item>``: parse the item, load and validate params.yaml before
any work, measure resources, and turn every failure into one clear line and a non-zero
exit code (the traceback only with ``REPROLAB_DEBUG=1``).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from reprolab.core.config import Params, load_params
from reprolab.core.errors import PipelineError, ValidationError
from reprolab.core.resources import StageResources

StageMain = Callable[[str, Params, StageResources], None]

DATASETS = ("markets", "options", "contexts")
MODELS = ("mamba", "pinn", "cet")


# Steps that run once for the whole pipeline, with no item, and the module that holds each.
SINGLE = {
    "walk_forward": "reprolab.models.mamba.walk_forward",
    "validate": "reprolab.validate.steps",
    "benchmark": "reprolab.benchmark.steps",
}


def items_of(step: str) -> tuple[str, ...]:
    """The items ``step`` runs for: the models for ``train``, none for a single step, the
    datasets otherwise."""
    if step in SINGLE:
        return ()
    return MODELS if step == "train" else DATASETS


def stage_module(step: str, item: str) -> str:
    """The library module that holds ``step@item``'s function (named like the step).

    The data steps of a dataset live in ``reprolab.datasets.<dataset>.steps``; a model's
    training recipe in ``reprolab.models.<model>.train``; a single step where ``SINGLE``
    says.
    """
    if step in SINGLE:
        return SINGLE[step]
    if step == "train":
        return f"reprolab.models.{item}.train"
    return f"reprolab.datasets.{item}.steps"


def dispatch(step: str, item: str, params: Params, res: StageResources) -> None:
    """Run ``step@item``: import its module and call its step function."""
    getattr(importlib.import_module(stage_module(step, item)), step)(params, res)


def _debug() -> bool:
    return os.environ.get("REPROLAB_DEBUG", "") not in ("", "0")


def run_stage(
    step: str, main: StageMain, items: Sequence[str], argv: Sequence[str] | None = None
) -> int:
    """Run ``main(item, params, resources)`` for ``step@item``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    name = step
    try:
        if not items and args:
            raise ValidationError(
                f"usage: python -m stages.{step} (no arguments; got {' '.join(args)})"
            )
        if items and (len(args) != 1 or args[0] not in items):
            raise ValidationError(
                f"usage: python -m stages.{step} <item>; item must be one of {', '.join(items)}"
                f" (got {' '.join(args) or 'nothing'})"
            )
        item = args[0] if items else ""
        name = f"{step}@{item}" if items else step
        params = load_params()
        with StageResources(name, show_progress=params.resources.progress) as res:
            main(item, params, res)
        return 0
    except PipelineError as exc:
        if _debug():
            traceback.print_exc()
        print(f"error: {name}: {exc.kind}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"error: {name}: interrupted; run the stage again to restart it", file=sys.stderr)
        return 130
    except Exception as exc:  # the last line of defence: never a bare traceback
        if _debug():
            traceback.print_exc()
        print(
            f"error: {name}: unexpected {type(exc).__name__}: {exc} "
            "(set REPROLAB_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def entry(step: str) -> None:
    """``if __name__ == "__main__": entry("<step>")`` in ``stages/<step>.py``."""

    def main(item: str, params: Params, res: StageResources) -> None:
        dispatch(step, item, params, res)

    sys.exit(run_stage(step, main, items_of(step)))
