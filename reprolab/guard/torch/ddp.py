"""Data-parallel (DDP) training of the CET's supervised phase over several processes.

``train.cet.distributed: ddp`` runs phase 2 (SFT) in ``train.cet.nproc`` processes started
with ``torch.multiprocessing`` (the same as ``torchrun --nproc_per_node N`` on one machine):
gloo on CPU, nccl when every rank has a GPU. Every rank builds the same adapters on the same
base (same seed), takes its slice ``rows[rank::world]`` of each step's batch, and
``DistributedDataParallel`` averages the gradients, so every rank holds the same weights after
every step. Rank 0 writes the trained adapter weights, which the stage loads and continues
with (SCST runs in one process: its decoding is the bottleneck, not the gradient). Rank 0
also checkpoints every ``checkpoint_every`` steps; a signal makes every rank stop after the
same step (:func:`agree`), rank 0 checkpoints, and a rerun resumes there.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reprolab.core.errors import PipelineError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, job: Callable[..., Any], args: tuple) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import torch

    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= world else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        job(rank, world, *args)
    finally:
        dist.destroy_process_group()


def launch(job: Callable[..., Any], world: int, *args: Any) -> None:
    """Run ``job(rank, world, *args)`` in ``world`` processes with a process group set up.

    ``job`` must be importable (a module-level function): the processes are spawned. While
    they run, SIGTERM to this process is passed on to them once (SIGINT from a terminal
    reaches the whole process group anyway), so the job can checkpoint and stop cleanly.
    """
    import torch.multiprocessing as mp

    if world < 1:
        raise PipelineError(f"ddp needs at least one process (got {world})")
    context = mp.spawn(_worker, args=(world, free_port(), job, args), nprocs=world, join=False)
    forwarded: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        if signum == signal.SIGTERM and not forwarded:
            forwarded.append(signum)
            for process in context.processes:
                if process.is_alive():
                    os.kill(process.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not context.join():
            pass
    except mp.ProcessRaisedException as exc:
        last = str(exc).strip().splitlines()[-1]
        raise PipelineError(f"ddp: a worker failed: {last}") from None
    except mp.ProcessExitedException as exc:
        raise PipelineError(f"ddp: a worker died: {exc}") from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def agree(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (so all ranks stop at the same step)."""
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def shard(rows: Any, rank: int, world: int) -> Any:
    """This rank's slice of a step's batch (every rank sees a disjoint part)."""
    return rows[rank::world]


def save_rank0(rank: int, fingerprint: str, state: dict[str, Any], path: Path) -> None:
    """Rank 0 writes the checkpoint ``state`` (:mod:`reprolab.guard.common.checkpoint`); the others
    only wait for it."""
    import torch.distributed as dist

    from reprolab.guard.common.checkpoint import save_torch

    if rank == 0:
        save_torch(path, fingerprint, state)
    dist.barrier()
