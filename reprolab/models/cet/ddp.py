"""Phase 2 (SFT) over DDP ranks on CPU (gloo): the job each rank runs."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from reprolab.core.errors import PipelineError
from reprolab.models.cet.data import Data
from reprolab.models.cet.steps import (
    attach_configured,
    load_trainable,
    make_optimizer,
    phase_scheduler,
    supervised_step,
    trainable_state,
)


def ddp_sft_job(rank: int, world: int, job_path: str) -> None:
    """One DDP rank of phase 2: the same adapters, its shard of every step's batch.

    Rank 0 checkpoints every ``checkpoint_every`` steps (weights, optimizer, scheduler, every
    rank's RNG state, the logs so far); a run with the same fingerprint resumes there. A
    signal on any rank stops every rank after the same step, with a checkpoint.
    """
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from reprolab.guard.common.checkpoint import load_torch
    from reprolab.guard.common.signals import signals_to_flag
    from reprolab.guard.torch.ddp import agree, save_rank0, shard
    from reprolab.models.cet.model import load_base_model, rng_state, set_determinism, set_rng_state

    job = torch.load(job_path, weights_only=False)
    set_determinism(job["seed"], job["threads"])
    a, p, base_dir = job["adapter"], job["sft"], Path(job["base_dir"])
    # The same adapters as the stage's own model: LoRA on the float base, or QLoRA.
    base = None if job["method"] == "qlora" else load_base_model(base_dir)
    adapted = attach_configured(base, base_dir, a, job["method"], job["seed"])
    model = adapted.model
    model.train()
    ddp = DistributedDataParallel(model)
    optimizer = make_optimizer(model, p.learning_rate)
    scheduler = phase_scheduler(optimizer, p)
    data = Data.from_lines(job["prompts"], job["targets"], job["other_program"])
    checkpoint, every = Path(job["checkpoint"]), job["checkpoint_every"]
    logs: list[dict[str, float]] = []
    events: list[str] = []
    first = 0
    saved = load_torch(checkpoint, job["fingerprint"], events.append)
    if saved is not None:
        load_trainable(model, saved["weights"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"][rank])
        first, logs = saved["next_step"], saved["logs"]
        events.append(f"resumed from {checkpoint} at step {first + 1}/{p.steps}")

    def save(next_step: int) -> None:
        rngs: list[Any] = [None] * world
        dist.all_gather_object(rngs, rng_state())
        state = {
            "next_step": next_step,
            "weights": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rngs,
            "logs": logs,
        }
        save_rank0(rank, job["fingerprint"], state, checkpoint)

    interrupted = None
    with signals_to_flag(events) as flag:
        for step in range(first, p.steps):
            rows = data.batch(job["seed"], "sft", step, p.batch_size, job["line_weights"])
            rows = shard(rows, rank, world)
            out = supervised_step(ddp, optimizer, data, rows, len(rows), job["pad_id"], lm=False)
            logs.append({**out, "lr": optimizer.param_groups[0]["lr"]})
            scheduler.step()
            if agree(flag.signum is not None):
                save(step + 1)
                interrupted = (step + 1, int(flag.signum or signal.SIGTERM))
                break
            if (step + 1) % every == 0 and step + 1 < p.steps:
                save(step + 1)
    weights = trainable_state(model)
    if interrupted is None:
        # DDP's promise, checked: every rank ends with the very same adapter weights.
        digest = torch.tensor([float(sum(float(v.double().sum()) for v in weights.values()))])
        gathered = [torch.zeros(1, dtype=digest.dtype) for _ in range(world)]
        dist.all_gather(gathered, digest)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise PipelineError(f"ddp: ranks disagree on the adapter weights: {gathered}")
    result = {
        "weights": weights,
        "logs": logs,
        "method": adapted.method,
        "events": events,
        "interrupted": interrupted,
    }
    save_rank0(rank, job["fingerprint"], result, Path(job["result"]))
