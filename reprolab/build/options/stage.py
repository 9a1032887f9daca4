"""The options steps: generate -> split_augment -> features -> data_metrics."""

from __future__ import annotations

import numpy as np

from reprolab.build.options.split import split_options
from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.io import write_json
from reprolab.core.manifest import sealed_dir, sealed_dirs
from reprolab.core.paths import SPLITS
from reprolab.core.resources import MemoryBudget, StageResources
from reprolab.core.seeding import rng
from reprolab.core.tables import check_finite, list_parts, part_name, read_parquet, write_parquet
from reprolab.datasets.options.features import (
    COORDINATE_COLUMNS,
    MODEL_INPUTS,
    collocation_points,
    option_coordinates,
)
from reprolab.datasets.options.generate import (
    OPTION_COLUMNS,
    OPTION_SCHEMA,
    evaluation_grid,
    generate_options,
)

DATASET = "options"
_BYTES_PER_ROW = 8 * (len(OPTION_COLUMNS) + len(COORDINATE_COLUMNS)) * 2


def generate(params: Params, res: StageResources) -> None:
    g = params.options.generate
    MemoryBudget(params.resources.memory_budget_mb).check(
        min(g.chunk_rows, g.n_contracts) * _BYTES_PER_ROW,
        f"pricing {g.chunk_rows} contracts per chunk (options.generate.chunk_rows)",
    )
    n_parts = -(-g.n_contracts // g.chunk_rows)
    with sealed_dirs(
        f"generate@{DATASET}", (paths.raw(DATASET), OPTION_SCHEMA), (paths.truth(DATASET), None)
    ) as (raw, truth):
        chunks = generate_options(g, params.seed)
        for i, chunk in enumerate(res.progress(chunks, n_parts)):
            write_parquet(raw / part_name(i), chunk)
            res.add_rows(len(chunk))
        write_parquet(truth / "grid.parquet", evaluation_grid(g.domain, params.options.split))


def split_augment(params: Params, res: StageResources) -> None:
    """Options get no augmentation: the closed form labels any point exactly, so more data
    is simply a larger ``options.generate.n_contracts``."""
    gen = rng(params.seed, DATASET, "split")
    parts = list_parts(paths.raw(DATASET))
    with sealed_dir(paths.split(DATASET), f"split_augment@{DATASET}") as out:
        for i, part in enumerate(res.progress(parts, len(parts))):
            contracts = read_parquet(part)
            check_finite(contracts, OPTION_COLUMNS, str(part))
            for name, frame in split_options(contracts, params.options.split, gen).items():
                write_parquet(out / name / part_name(i), frame)
            res.add_rows(len(contracts))


def features(params: Params, res: StageResources) -> None:
    o = params.options
    inputs = {name: list_parts(paths.split(DATASET) / name) for name in SPLITS}  # checked first
    with sealed_dir(paths.features(DATASET), f"features@{DATASET}") as out:
        for name, parts in inputs.items():
            for i, part in enumerate(res.progress(parts, len(parts), name)):
                coords = option_coordinates(read_parquet(part))
                check_finite(coords, COORDINATE_COLUMNS, f"{part} coordinates")
                write_parquet(out / name / part_name(i), coords)
                res.add_rows(len(coords))
        sets = collocation_points(o.features, o.generate.domain, o.split.heldout, params.seed)
        for name, frame in sets.items():
            check_finite(frame, MODEL_INPUTS, f"collocation {name}")
            write_parquet(out / "collocation" / f"{name}.parquet", frame)
            res.add_rows(len(frame))


def data_metrics(params: Params, res: StageResources) -> None:
    feats = paths.features(DATASET)
    report: dict[str, object] = {}
    for name in SPLITS:
        frame = read_parquet(feats / name, columns=["tau", "call_price_k", "region"])
        report[name] = {
            "rows": len(frame),
            "rows_heldout": int((frame["region"] == "heldout").sum()),
            "tau_years_min": round(float(frame["tau"].min()), 6),
            "tau_years_max": round(float(frame["tau"].max()), 6),
            "call_price_k_mean": round(float(frame["call_price_k"].mean()), 6),
        }
        res.add_rows(len(frame))
    report["collocation"] = {
        name: len(read_parquet(feats / "collocation" / f"{name}.parquet"))
        for name in ("interior", "terminal", "boundary")
    }
    grid = read_parquet(paths.truth(DATASET) / "grid.parquet", columns=["region"])
    report["truth_grid"] = {
        "points": len(grid),
        "points_heldout": int(np.sum(grid["region"].to_numpy() == "heldout")),
    }
    write_json(paths.data_metrics(DATASET), report)
