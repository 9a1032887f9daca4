"""The contexts steps: generate -> split_augment -> features -> data_metrics (CET data).

* ``generate``: ``n_programs`` seeded programs, each as one sample (raw context, gold context,
  the label of every raw line, hidden tests), plus a separate pool of distractor programs
  whose requirements are mixed into raw contexts (so no sample's text ever carries another
  sample's program). The reference programs (step kinds and constants) go to ``data/truth``
  for the judges.
* ``split_augment``: split by template (step sequence), so val and test programs are new
  shapes; then training programs only get ``augment.copies`` re-rendered raw contexts.
* ``features``: a byte-level BPE tokenizer trained on the training split only; every split
  tokenised, never truncated: whole (prompt = raw context, target = gold context) and line by
  line (prompt = the task's name and one raw line, target = the line's label: the CET's unit).
* ``data_metrics``: sizes, token lengths, the template-hash disjointness check and the
  reconstructor's pass rate of the context baselines (gold = the ceiling, raw, heuristic,
  none) per split.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from reprolab.build.contexts.split import split_groups
from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.errors import DataQualityError
from reprolab.core.io import write_json
from reprolab.core.manifest import sealed_dir, sealed_dirs
from reprolab.core.paths import SPLITS
from reprolab.core.resources import StageResources
from reprolab.core.seeding import rng
from reprolab.core.tables import read_parquet, write_parquet
from reprolab.datasets.contexts.programs import generate_programs, split_off_pool
from reprolab.datasets.contexts.read import (
    DATASET,
    TOKENIZER,
    baseline_contexts,
    read_features,
)
from reprolab.datasets.contexts.read import (
    split_file as _split_file,
)
from reprolab.datasets.contexts.render import augment_sample, make_sample, program_from_sample

SAMPLES = "samples.parquet"
DISTRACTORS = "distractors.parquet"
SAMPLE_COLUMNS = ["program_id", "name", "input_type", "template", "template_hash", "raw", "gold"]
# The generator's contract for samples and distractors (arrow types, in column order).
RAW_SCHEMA = [
    *(
        [c, "large_string"]
        for c in ("program_id", "name", "input_type", "template", "template_hash")
    ),
    ["n_steps", "int64"],
    *([c, "large_string"] for c in ("raw", "gold", "tests", "line_labels", "line_roles")),
    ["n_raw_chars", "int64"],
    ["n_gold_chars", "int64"],
]


def distractor_pool_size(n_programs: int) -> int:
    """Distractor programs: enough variety that contexts rarely share one (at least 50)."""
    return max(50, n_programs // 4)


def generate(params: Params, res: StageResources) -> None:
    g = params.contexts.generate
    n_pool = distractor_pool_size(g.n_programs)
    # One call, so dataset and distractor programs never share a name.
    programs = generate_programs(
        rng(params.seed, DATASET, "programs"),
        g.n_programs + n_pool,
        g.min_steps,
        g.max_steps,
        n_tests=g.n_tests,
    )
    programs, pool = split_off_pool(programs, n_pool, rng(params.seed, DATASET, "pool"))
    gen = rng(params.seed, DATASET, "contexts")
    samples = [
        make_sample(p, gen, pool, noise=g.noise, corrections=g.corrections)
        for p in res.progress(programs, len(programs), "programs")
    ]
    frame = pd.DataFrame(samples)
    if frame["program_id"].duplicated().any():
        dup = frame.loc[frame["program_id"].duplicated(), "program_id"].iloc[0]
        raise DataQualityError(f"generate@contexts: program_id {dup} occurs twice")
    truth = pd.DataFrame(
        {
            "program_id": frame["program_id"],
            "steps": [json.dumps([[s.kind, s.const] for s in p.steps]) for p in programs],
        }
    )
    with sealed_dirs(
        f"generate@{DATASET}", (paths.raw(DATASET), RAW_SCHEMA), (paths.truth(DATASET), None)
    ) as (raw, tr):
        write_parquet(raw / SAMPLES, frame)
        write_parquet(raw / DISTRACTORS, pd.DataFrame([make_sample(p, gen) for p in pool]))
        write_parquet(tr / "programs.parquet", truth)
    res.add_rows(len(frame))


def split_augment(params: Params, res: StageResources) -> None:
    s = params.contexts.split
    samples = read_parquet(paths.raw(DATASET) / SAMPLES)
    pool = [
        program_from_sample(r)
        for r in read_parquet(paths.raw(DATASET) / DISTRACTORS).to_dict("records")
    ]
    part = split_groups(samples["template_hash"], s, rng(params.seed, DATASET, "split"))
    gen = rng(params.seed, DATASET, "augment")
    with sealed_dir(paths.split(DATASET), f"split_augment@{DATASET}") as out:
        for name in SPLITS:
            frame = samples[part == name].reset_index(drop=True)
            frame.insert(1, "copy", 0)  # 0: the generated context; k > 0: augmentation k
            if name == "train" and s.augment.copies > 0:
                extra = [
                    {
                        **augment_sample(
                            row,
                            gen,
                            pool,
                            noise=s.augment.noise,
                            corrections=s.augment.corrections,
                        ),
                        "copy": k,
                    }
                    for row in res.progress(frame.to_dict("records"), len(frame), "augment")
                    for k in range(1, s.augment.copies + 1)
                ]
                frame = pd.concat([frame, pd.DataFrame(extra)[frame.columns]], ignore_index=True)
            write_parquet(out / _split_file(name), frame)
            res.add_rows(len(frame))


def features(params: Params, res: StageResources) -> None:
    from reprolab.datasets.contexts.features import (
        encode_lines,
        encode_pair,
        save_tokenizer,
        train_tokenizer,
    )

    f = params.contexts.features
    splits = {n: read_parquet(paths.split(DATASET) / _split_file(n)) for n in SPLITS}
    train = splits["train"]
    # Fit on the training split only: held-out programs never shape the vocabulary.
    tokenizer = train_tokenizer(
        [*train["raw"], *train["gold"]], vocab_size=f.vocab_size, min_frequency=f.min_frequency
    )
    with sealed_dir(paths.features(DATASET), f"features@{DATASET}") as out:
        save_tokenizer(tokenizer, out / TOKENIZER)
        for name, frame in splits.items():
            pairs = [
                encode_pair(tokenizer, raw, gold, f.max_prompt_tokens, f.max_target_tokens)
                for raw, gold in zip(frame["raw"], frame["gold"], strict=True)
            ]
            frame = frame.copy()
            frame["prompt_ids"] = [np.asarray(p["prompt_ids"], dtype=np.int32) for p in pairs]
            frame["target_ids"] = [np.asarray(p["target_ids"], dtype=np.int32) for p in pairs]
            # The CET's own unit: one (prompt, label) pair per raw line.
            lines = [
                encode_lines(
                    tokenizer,
                    raw,
                    nm,
                    json.loads(labels),
                    f.max_prompt_tokens,
                    f.max_target_tokens,
                )
                for raw, nm, labels in zip(
                    frame["raw"], frame["name"], frame["line_labels"], strict=True
                )
            ]
            frame["line_prompt_ids"] = [_int_lists(x["prompt_ids"]) for x in lines]
            frame["line_target_ids"] = [_int_lists(x["target_ids"]) for x in lines]
            write_parquet(out / _split_file(name), frame)
            res.add_rows(len(frame))


def _int_lists(rows: Any) -> list[np.ndarray]:
    return [np.asarray(r, dtype=np.int32) for r in rows]


def _flat(rows: pd.Series) -> list[Any]:
    return [x for row in rows for x in row]


def _lengths(values: pd.Series) -> dict[str, float]:
    n = np.array([len(v) for v in values])
    return {
        "mean": round(float(n.mean()), 2),
        "p50": float(np.percentile(n, 50)),
        "p95": float(np.percentile(n, 95)),
        "max": int(n.max()),
    }


def data_metrics(params: Params, res: StageResources) -> None:
    from reprolab.datasets.contexts.reconstruct import Reconstructor

    splits = {n: read_features(n) for n in SPLITS}
    seen: dict[str, str] = {}
    for name, frame in splits.items():
        for h in frame["template_hash"].unique():
            if seen.setdefault(h, name) != name:
                raise DataQualityError(
                    f"data_metrics@contexts: template hash {h[:12]} is in {seen[h]} and {name}"
                )
    report: dict[str, Any] = {"template_hashes_disjoint": True}
    with Reconstructor(workers=1) as rec:
        for name, frame in splits.items():
            original = frame[frame["copy"] == 0]
            entry: dict[str, Any] = {
                "rows": len(frame),
                "programs": int(original["program_id"].nunique()),
                "templates": int(frame["template_hash"].nunique()),
                "augmented_rows": int((frame["copy"] > 0).sum()),
                "prompt_tokens": _lengths(frame["prompt_ids"]),
                "target_tokens": _lengths(frame["target_ids"]),
                "line_prompt_tokens": _lengths(pd.Series(_flat(frame["line_prompt_ids"]))),
                "line_target_tokens": _lengths(pd.Series(_flat(frame["line_target_ids"]))),
                "lines_per_context": _lengths(frame["line_prompt_ids"]),
                "raw_chars": _lengths(frame["raw"]),
                "gold_chars": _lengths(frame["gold"]),
                "gold_over_raw_tokens": round(
                    float(
                        sum(len(t) for t in frame["target_ids"])
                        / sum(len(p) for p in frame["prompt_ids"])
                    ),
                    4,
                ),
            }
            tests = list(original["tests"])
            entry["pass_rate"] = {
                baseline: round(
                    float(np.mean(rec.score_many(list(zip(contexts, tests, strict=True))))), 4
                )
                for baseline, contexts in baseline_contexts(original).items()
            }
            report[name] = entry
            res.add_rows(len(frame))
    write_json(paths.data_metrics(DATASET), report)
