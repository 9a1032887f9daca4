"""The shared shape of every stage entry point.

``python -m stages.<step> <item>``: parse the item, load and validate params.yaml before
any work, measure resources, and turn every failure into one clear line and a non-zero
exit code (the traceback only with ``REPROLAB_DEBUG=1``).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from reprolab.core import paths, registry
from reprolab.core.config import Params, load_params
from reprolab.core.errors import PipelineError, ValidationError
from reprolab.core.io import read_json
from reprolab.core.preflight import check_outputs, output_errors, stage_outputs
from reprolab.core.resources import StageResources
from reprolab.core.signals import StageInterrupted, die_with_parent, install_stage_handlers

StageMain = Callable[[str, Params, StageResources], None]

DATASETS = registry.DATASETS
MODELS = tuple(registry.MODELS)


# Steps that run once for the whole pipeline, with no item, and the module that holds each.
SINGLE = {
    "walk_forward": "reprolab.walk_forward.stage",
    "validate": "reprolab.validate.stage",
    "benchmark": "reprolab.benchmark.stage",
    # dvc.yaml's first stage; stages/check_params.py calls config.check_params itself (it
    # records no resources), listed here so that its import closure is checked like the rest
    "check_params": "reprolab.core.config",
}


# The stages before validate (dvc.yaml), each writing metrics/resources/<name>.json.
JUDGED_STAGES = (
    *(f"{s}_{d}" for s in registry.DATA_STEPS for d in DATASETS),
    *(f"train_{m}" for m in MODELS),
    "walk_forward",
)


def stage_resources() -> list[dict[str, Any]]:
    """The resource file of every judged stage that wrote one, in pipeline order."""
    files = [paths.RESOURCES / f"{stage}.json" for stage in JUDGED_STAGES]
    return [read_json(f) for f in files if f.exists()]


def items_of(step: str) -> tuple[str, ...]:
    """The items ``step`` runs for: the models for ``train``, none for a single step, the
    datasets otherwise."""
    if step in SINGLE:
        return ()
    return MODELS if step == "train" else DATASETS


def stage_module(step: str, item: str) -> str:
    """The library module that holds ``step@item``'s function (named like the step): every
    stage's functions live in a module named ``stage``, which nothing else imports.

    The data steps of a dataset live in ``reprolab.build.<dataset>.stage``; a model's
    training stage in ``reprolab.models.<model>.stage``; a single step where ``SINGLE`` says.
    """
    if step in SINGLE:
        return SINGLE[step]
    if step == "train":
        return f"reprolab.models.{item}.stage"
    return f"reprolab.build.{item}.stage"


def dispatch(step: str, item: str, params: Params, res: StageResources) -> None:
    """Run ``step@item``: import its module and call its step function."""
    getattr(importlib.import_module(stage_module(step, item)), step)(params, res)


def _debug() -> bool:
    return os.environ.get("REPROLAB_DEBUG", "") not in ("", "0")


def run_stage(
    step: str,
    main: StageMain,
    items: Sequence[str],
    argv: Sequence[str] | None = None,
    *,
    restore_handlers: bool = True,
) -> int:
    """Run ``main(item, params, resources)`` for ``step@item``; returns the exit code.

    ``restore_handlers=False`` (a stage's own process): once the exit code is decided SIGTERM
    is ignored, so a SIGTERM repeated after the line (a dying parent's, even during the
    interpreter's shutdown, which resets handlers) cannot turn it into a death by signal.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    name = step
    # From the first line on a signal ends the stage with one line, never the default death;
    # the guards' own handlers take over during training. Put back for in-process callers.
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    install_stage_handlers()
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
        try:
            params = load_params()
        except ValidationError as exc:
            # `dvc repro` deletes a stage's outputs before it runs the command
            raise ValidationError(
                f"{exc} (after fixing it: `dvc checkout {name}` restores the cached outputs "
                "`dvc repro` removed, `dvc repro` the rest)"
            ) from None
        check_outputs(stage_outputs(name))  # fail now, not after the work, if it cannot write
        progress = params.resources.progress
        with StageResources(name, show_progress=progress) as res, output_errors():
            main(item, params, res)
        return 0
    except PipelineError as exc:
        if _debug():
            traceback.print_exc()
        print(f"error: {name}: {exc.kind}: {exc}", file=sys.stderr)
        return exc.exit_code
    except StageInterrupted as exc:
        print(f"error: {name}: {_interrupted(step, exc.signum, exc.again)}", file=sys.stderr)
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
    finally:
        if threading.current_thread() is threading.main_thread():
            if not restore_handlers:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            else:
                for sig, handler in previous.items():
                    signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _interrupted(step: str, signum: int, again: bool = False) -> str:
    """What a signal outside the training loops means for ``step`` (its one line)."""
    sig = signal.Signals(signum).name
    if again:
        return (
            f"stopped at once by a second {sig} (the current step was not saved); run "
            "`dvc repro` again to resume from the last checkpoint"
        )
    if step == "train":
        return (
            f"interrupted ({sig}) outside a training step; run `dvc repro` again to resume "
            "from the last checkpoint"
        )
    return f"interrupted ({sig}); nothing was recorded; run `dvc repro` again to redo the stage"


def entry(step: str) -> None:
    """``if __name__ == "__main__": entry("<step>")`` in ``stages/<step>.py``."""

    def main(item: str, params: Params, res: StageResources) -> None:
        dispatch(step, item, params, res)

    die_with_parent()  # a stage whose `dvc repro` dies stops too, instead of running orphaned
    sys.exit(run_stage(step, main, items_of(step), restore_handlers=False))
