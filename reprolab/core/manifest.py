"""Table manifests: every parquet file of an output, checked before anyone reads it.

A stage builds each data output in :func:`sealed_dir`; before the directory is swapped in,
every folder of it that holds ``*.parquet`` files gets a ``_manifest.json`` naming each file
with its rows, the sha256 of its bytes, the ids it holds and its arrow schema. Readers go
through :func:`verified_parts` and :func:`verified_file` (``tables.list_parts`` and
``tables.read_parquet`` do), so a missing, extra, changed, truncated or re-typed file fails with
one line naming it, before any work, instead of being read as half (or twice) the data.

The manifest is deterministic JSON (sorted keys, relative names, no timestamps): it is part
of the output DVC hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from reprolab.core.errors import DataQualityError, DependencyError
from reprolab.core.io import PathLike, atomic_dir, read_json, write_json

MANIFEST = "_manifest.json"
FORMAT = 1
PART_PREFIX = "part-"
# The column that identifies a table's rows, first match wins: what a lost part held.
ID_COLUMNS = ("symbol", "contract_id", "program_id")
# Where each data output comes from (``paths``' layout), to say what to rerun.
_STEPS = {"raw": "generate", "truth": "generate", "split": "split_augment", "features": "features"}

Schema = list[list[str]]  # [[column, arrow type], ...] in column order


def producer_of(path: PathLike) -> str:
    """The stage that writes ``path``, from the ``data/<kind>/<dataset>`` layout."""
    parts = Path(path).parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "data" and parts[i + 1] in _STEPS and i + 2 < len(parts):
            return f"{_STEPS[parts[i + 1]]}@{parts[i + 2]}"
    return "the stage that produces it"


def sha256_of(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_schema(path: Path, producer: str | None = None) -> Schema:
    """The file's arrow schema; a file that is no parquet (garbage, truncated) is bad data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # the OS refusing the read, not a corrupt file
        reason = str(exc).strip().split(". ")[0].splitlines()[0].rstrip(".")
        rerun = producer or producer_of(path)
        raise DataQualityError(
            f"{path}: not a readable parquet file ({reason}); rerun {rerun}"
        ) from None
    return [[name, str(t)] for name, t in zip(schema.names, schema.types, strict=True)]


def _ids(path: Path, columns: list[str]) -> dict[str, Any] | None:
    """Which rows the file holds, compactly: the id column, its distinct count and range."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    column = next((c for c in ID_COLUMNS if c in columns), None)
    if column is None:
        return None
    # ParquetFile, not read_table: no pyarrow.dataset import (about 1 s) in a writer.
    values = pq.ParquetFile(path).read(columns=[column]).column(0)
    bounds = pc.min_max(values).as_py()
    return {
        "column": column,
        "distinct": len(pc.unique(values)),
        "first": bounds["min"],
        "last": bounds["max"],
    }


def _describe(entry: Mapping[str, Any]) -> str:
    """What a file held, for a line about it: rows and its id range."""
    ids, rows = entry.get("ids"), f"{entry['rows']} rows"
    if not ids or ids["distinct"] == 0:
        return rows
    if ids["distinct"] == 1:
        return f"{rows}; {ids['column']} {ids['first']}"
    return f"{rows}; {ids['distinct']} {ids['column']} values {ids['first']}..{ids['last']}"


def schema_difference(found: Schema, expected: Schema) -> str | None:
    """The first way ``found`` differs from ``expected``, as words; None when equal."""
    have, want = dict(map(tuple, found)), dict(map(tuple, expected))
    for column, kind in want.items():
        if column not in have:
            return f"column '{column}' is missing, expected {kind}"
        if have[column] != kind:
            return f"column '{column}' is {have[column]}, expected {kind}"
    for column in have:
        if column not in want:
            return f"column '{column}' is not in the expected schema"
    if found != expected:
        return f"columns in another order, expected {[c for c, _ in expected]}"
    return None


def _entry(path: Path, producer: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    schema = read_schema(path, producer)
    return {
        "name": path.name,
        "rows": pq.read_metadata(path).num_rows,
        "sha256": sha256_of(path),
        "ids": _ids(path, [c for c, _ in schema]),
        "schema": schema,
    }


def _check_written(
    entries: list[dict[str, Any]], shown: Path, producer: str, schema: Schema | None
) -> None:
    """What the producer wrote has its declared schema; all parts of a table agree."""
    first = next((e for e in entries if e["name"].startswith(PART_PREFIX)), None)
    for e in entries:
        if schema is not None:
            want, whose = schema, f"{producer}'s schema"
        elif first is not None and e["name"].startswith(PART_PREFIX):
            want, whose = first["schema"], f"as in {first['name']}"
        else:
            continue
        diff = schema_difference(e["schema"], want)
        if diff:
            raise DataQualityError(f"{shown / e['name']}: {diff} ({whose})")


def seal(
    directory: PathLike,
    producer: str,
    schema: Schema | None = None,
    shown_as: PathLike | None = None,
) -> None:
    """Write ``_manifest.json`` in every folder under ``directory`` that holds parquet files.

    ``schema``: the columns and types every parquet file under ``directory`` must have (the
    producer's contract); without it, the parts of a table must at least agree with each
    other. ``shown_as``: the name errors use for ``directory`` (its final place).
    """
    root = Path(directory)
    shown_root = Path(shown_as) if shown_as is not None else root
    for folder in sorted({p.parent for p in root.rglob("*.parquet")}):
        shown = shown_root / folder.relative_to(root)
        entries = [_entry(f, producer) for f in sorted(folder.glob("*.parquet"))]
        _check_written(entries, shown, producer, schema)
        write_json(
            folder / MANIFEST,
            {
                "format": FORMAT,
                "producer": producer,
                "rows": sum(e["rows"] for e in entries),
                "files": entries,
            },
        )


@contextlib.contextmanager
def sealed_dirs(
    producer: str, *outputs: tuple[PathLike, Schema | None]
) -> Iterator[tuple[Path, ...]]:
    """:func:`io.atomic_dir` for each ``(path, schema)`` output of one stage; after the body,
    every one is sealed (and so checked) before any of them is swapped in."""
    with contextlib.ExitStack() as stack:
        tmps = tuple(stack.enter_context(atomic_dir(path)) for path, _ in outputs)
        yield tmps
        for tmp, (path, schema) in zip(tmps, outputs, strict=True):
            seal(tmp, producer, schema, shown_as=path)


@contextlib.contextmanager
def sealed_dir(path: PathLike, producer: str, schema: Schema | None = None) -> Iterator[Path]:
    """One output of :func:`sealed_dirs`."""
    with sealed_dirs(producer, (path, schema)) as (tmp,):
        yield tmp


def load_manifest(folder: PathLike) -> dict[str, Any]:
    """The manifest of ``folder``; a missing folder or manifest names the stage to rerun."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DependencyError(f"{folder}: not found (run {producer_of(folder)} first)")
    path = folder / MANIFEST
    if not path.exists():
        raise DependencyError(
            f"{folder}: no {MANIFEST}, so its files cannot be checked (rerun {producer_of(folder)})"
        )
    manifest = read_json(path)
    if not (
        isinstance(manifest, dict)
        and manifest.get("format") == FORMAT
        and isinstance(manifest.get("files"), list)
    ):
        raise DataQualityError(
            f"{path}: not a manifest of format {FORMAT} (rerun {producer_of(folder)})"
        )
    return manifest


def _check_file(path: Path, entry: Mapping[str, Any], producer: str) -> None:
    """Readable, the schema the producer wrote, and the very bytes it wrote."""
    diff = schema_difference(read_schema(path, producer), entry["schema"])
    if diff:
        raise DataQualityError(f"{path}: {diff} (as {producer} wrote it); rerun {producer}")
    if sha256_of(path) != entry["sha256"]:
        raise DataQualityError(
            f"{path}: changed since {producer} wrote it (its sha256 differs from "
            f"{MANIFEST}'s; it held {_describe(entry)}); rerun {producer}"
        )


def _check_set(folder: Path, listed: Mapping[str, Any], producer: str) -> None:
    """The parquet files on disk are exactly the manifest's: none lost, none added."""
    on_disk = {p.name for p in folder.glob("*.parquet")}
    problems = [
        f"{name} is missing ({_describe(listed[name])})" for name in sorted(set(listed) - on_disk)
    ]
    problems += [f"{name} is not in {MANIFEST}" for name in sorted(on_disk - set(listed))]
    if problems:
        raise DataQualityError(
            f"{folder}: {'; '.join(problems)}; {producer} wrote {len(listed)} file(s) here: "
            "rerun it"
        )


def verified_parts(directory: PathLike) -> list[Path]:
    """The ``part-*.parquet`` files of a partitioned table, in order, after checking every
    parquet file of ``directory`` against its manifest (set, readability, schema, bytes)."""
    folder = Path(directory)
    manifest = load_manifest(folder)
    producer = manifest.get("producer", producer_of(folder))
    listed = {e["name"]: e for e in manifest["files"]}
    _check_set(folder, listed, producer)
    for name, entry in sorted(listed.items()):
        _check_file(folder / name, entry, producer)
    parts = [folder / n for n in sorted(listed) if n.startswith(PART_PREFIX)]
    if not parts:
        raise DependencyError(f"{folder}: no part-*.parquet files (rerun {producer})")
    return parts


def verified_file(path: PathLike) -> Path:
    """``path`` after checking it against its folder's manifest."""
    path = Path(path)
    manifest = load_manifest(path.parent)
    producer = manifest.get("producer", producer_of(path))
    entry = next((e for e in manifest["files"] if e["name"] == path.name), None)
    if entry is None:
        if not path.exists():
            raise DependencyError(f"{path}: file not found (run {producer} first)")
        raise DataQualityError(f"{path}: not in {MANIFEST} (not written by {producer})")
    if not path.exists():
        raise DataQualityError(
            f"{path}: missing ({_describe(entry)}, listed in {MANIFEST}); rerun {producer}"
        )
    _check_file(path, entry, producer)
    return path
