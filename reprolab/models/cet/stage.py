"""train@cet: train the context engineering transformer (:mod:`reprolab.models.cet.train`),
save its base and adapter, and write its metrics."""

from __future__ import annotations

import contextlib
import copy
import shutil
import time

from reprolab.core.config import Params
from reprolab.core.io import atomic_dir, rounded, write_json
from reprolab.core.resources import StageResources
from reprolab.core.seeding import int_seed
from reprolab.guard.common.live import LiveLog
from reprolab.models.cet.probe import adapter_probe, probe_quality, rss_mib
from reprolab.models.cet.train import CHECKPOINTS, METRICS_DIR, MODEL, MODEL_DIR, CetTrainer


def train(params: Params, res: StageResources) -> None:
    from transformers.utils import logging as hf_logging

    from reprolab.datasets.contexts.reconstruct import Reconstructor
    from reprolab.models.cet.model import save_adapter, set_determinism

    hf_logging.disable_progress_bar()  # our own bars (tqdm) tell the story
    t = params.train.cet
    seed = int_seed(params.seed, "train", MODEL)
    set_determinism(seed, t.threads)
    live = LiveLog(METRICS_DIR / "live")
    start = time.perf_counter()
    with Reconstructor(workers=t.reconstruct_workers) as rec:
        trainer = CetTrainer(params, res, live, rec)
        res.add_rows(len(trainer.train) + len(trainer.val) + len(trainer.test))
        base = trainer.pretrain()
        with atomic_dir(MODEL_DIR) as out:
            # One from_pretrained directory: weights, config and the tokenizer.
            base.save_pretrained(out / "base")
            trainer.tokenizer.save_pretrained(out / "base")
            base_state = copy.deepcopy(base)
            adapted = trainer.attach(base, out / "base", t.adapter.method)
            model = adapted.model
            trainer.sft(model, out / "base", adapted.method)
            scst = trainer.scst(model)
            save_adapter(model, out / "adapter")
            evaluation = trainer.evaluate(model)
            probe = adapter_probe(trainer, base_state, out / "base")
        live.end()
    seconds = time.perf_counter() - start
    cet = evaluation["cet"]
    report = {
        "test": evaluation,
        "margin_over_heuristic": round(cet["pass_rate"] - evaluation["heuristic"]["pass_rate"], 4),
        "scst": scst,
        "adapter_method": adapted.method,
        "adapters": probe_quality(probe),
        "cache_hit_rate": round(rec.hit_rate, 4),
        "events": trainer.events,
    }
    write_json(METRICS_DIR / "metrics.json", rounded(report))
    write_json(
        METRICS_DIR / "speed.json",
        {
            "train_seconds": round(seconds, 3),
            "phase_seconds": {k: round(v, 3) for k, v in trainer.seconds.items()},
            "adapters": probe,
            "rss_mib_at_end": rss_mib(),
        },
    )
    with contextlib.suppress(OSError):
        shutil.rmtree(CHECKPOINTS)
