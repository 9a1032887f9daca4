"""The check_params stage: the whole params file validated before DVC deletes any output."""

from __future__ import annotations

import sys
from pathlib import Path

from reprolab.core.config.fields import PARAMS_FILE
from reprolab.core.config.files import load_params
from reprolab.core.errors import ValidationError

# Written by the check_params stage (dvc.yaml), which every other stage depends on so that
# DVC runs it first: a bad params.yaml then fails before DVC deletes any stage's outputs.
# Its bytes never depend on the values, so a rerun of the check reruns nothing downstream.
CHECK_MARKER = Path("metrics/params_check.txt")
CHECK_MARKER_TEXT = "params.yaml passed reprolab.core.config's checks\n"


def check_params(path: str | Path = PARAMS_FILE, marker: Path | None = None) -> int:
    """Validate the whole params file before any stage runs: one line, 0 or the
    ValidationError exit code. ``marker``: write :data:`CHECK_MARKER_TEXT` there on success."""
    try:
        load_params(path)
    except ValidationError as exc:
        print(f"error: check_params: {exc.kind}: {exc}", file=sys.stderr)
        return exc.exit_code
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(CHECK_MARKER_TEXT, encoding="utf-8")
    print(f"{path}: every section and key valid")
    return 0
