"""Pipeline errors: each kind maps to a distinct exit code and prints as one line."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: a failure the user can act on, reported as one clear line."""

    exit_code = 1
    kind = "pipeline error"


class ValidationError(PipelineError):
    """Bad parameters or bad input values (names the key or field)."""

    exit_code = 2
    kind = "invalid input"


class DependencyError(PipelineError):
    """A required input file or package is missing or unreadable."""

    exit_code = 3
    kind = "missing dependency"


class DataQualityError(PipelineError):
    """Data that violates a declared quality gate (names the column or row)."""

    exit_code = 4
    kind = "data quality"


class ResourceLimitError(PipelineError):
    """Work that would exceed a declared resource budget (memory, batch size)."""

    exit_code = 5
    kind = "resource limit"


class CheckpointError(PipelineError):
    """A checkpoint that cannot be written, read or resumed from."""

    exit_code = 6
    kind = "checkpoint"


class GateError(PipelineError):
    """A validate gate that did not pass under ``validate.strict`` (each one named)."""

    exit_code = 7
    kind = "gate failed"
