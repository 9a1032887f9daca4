"""train@cet: the context engineering transformer, in three guarded phases, and its metrics.

The CET works line by line: for each line of a raw context it reads the task's name and that
line, and writes the line's label: ``"n: <canonical requirement>"`` for a statement of step n,
``"n= <constant>"`` for a correction, nothing for everything else (other programs, near-
duplicates, noise). :func:`reprolab.datasets.contexts.render.assemble_context` puts the labels of a
context in step order with the corrections applied: that is the engineered context. (Reading
the whole context at once reached a pass rate of 0.024 at the same cost: a 1M-parameter model
trained for minutes cannot learn to find four lines among thirty and rewrite them at once.)

1. ``pretrain``: the base causal LM (built from ``train.cet.model``, or ``from_pretrained``
   of ``train.cet.base_model``) learns training-split text (line prompt, separator, label)
   with every parameter; saved with ``save_pretrained`` to ``models/cet/base``.
2. ``sft``: LoRA (or QLoRA on the 4-bit base) adapters learn line -> label, loss on the label.
3. ``scst``: self-critical RL. For a batch of training programs, every line sampled
   (temperature, top-p) and decoded greedily; reward = pass rate of the program the
   reconstructor rebuilds from the assembled context, shared by the program's lines;
   loss = -(r_sample - r_greedy) log p(sample) + a KL penalty to the
   base. Every ``val_every`` steps the greedy pass rate on a fixed validation subset decides:
   falling more than ``rollback_margin`` below the best, or below ``rollback_floor`` once the
   best was above it, restores the best adapter and optimizer state and scales the learning
   rate by ``rollback_lr_factor`` (logged; after ``max_rollbacks`` SCST stops there).

Everything is evaluated on the test split (templates never seen in training): the CET's
greedy contexts and the baselines (raw context, heuristic filter, no context, gold = the
ceiling). Outputs: ``models/cet/base`` (weights, config and tokenizer: a
``from_pretrained`` directory, usable as ``train.cet.base_model``), ``models/cet/adapter``;
``metrics/train/cet/metrics.json`` (quality, deterministic); ``speed.json`` (times, memory;
not cached); dvclive curves.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reprolab.core import paths
from reprolab.core.config import CetAdapterParams, CetPhaseParams, CetTrainParams, Params
from reprolab.datasets.contexts.metrics import context_report
from reprolab.datasets.contexts.render import OTHER_PROGRAM_ROLES, assemble_context
from reprolab.core.errors import DependencyError, PipelineError
from reprolab.core.io import atomic_dir, write_json
from reprolab.datasets.contexts.steps import TOKENIZER, baseline_contexts, read_features
from reprolab.core.resources import StageResources, rss_bytes
from reprolab.core.seeding import int_seed, rng
from reprolab.guard.checkpoint import train_fingerprint
from reprolab.guard.signals import TrainingInterrupted

MODEL = "cet"
MODEL_DIR = paths.model_dir(MODEL)
METRICS_DIR = paths.train_metrics(MODEL)
CHECKPOINTS = paths.checkpoints(MODEL)
GOALS = {"pass_rate": (">=", 0.95), "compression": ("<=", 0.3)}
MIB = 1024 * 1024


# --------------------------------------------------------------------------- data
class Data:
    """A tokenised split: the CET's unit is one raw line (prompt ids, target ids, flattened
    over the split's programs); the programs keep their tests and gold context.

    ``encode`` (a function of raw, name, labels) re-tokenises the texts: a base model named in
    ``train.cet.base_model`` brings its own tokenizer, which the stored ids do not match.
    """

    def __init__(self, frame: pd.DataFrame, encode: Any = None) -> None:
        self.frame = frame.reset_index(drop=True)
        if encode is None:
            per_program = zip(
                self.frame["line_prompt_ids"], self.frame["line_target_ids"], strict=True
            )
        else:
            encoded = [
                encode(r, n, json.loads(labels))
                for r, n, labels in zip(
                    self.frame["raw"], self.frame["name"], self.frame["line_labels"], strict=True
                )
            ]
            per_program = ((e["prompt_ids"], e["target_ids"]) for e in encoded)
        prompts: list[list[int]] = []
        targets: list[list[int]] = []
        self.spans: list[tuple[int, int]] = []  # each program's lines: prompts[start:end]
        for program_prompts, program_targets in per_program:
            start = len(prompts)
            prompts.extend(list(map(int, p)) for p in program_prompts)
            targets.extend(list(map(int, t)) for t in program_targets)
            self.spans.append((start, len(prompts)))
        # Lines that name another program: they look like requirements and carry no label.
        other_program = np.array(
            [r in OTHER_PROGRAM_ROLES for x in self.frame["line_roles"] for r in json.loads(x)]
        )
        self._set_lines(prompts, targets, other_program)
        self.tests = list(self.frame["tests"])
        self.gold = list(self.frame["gold"])
        self.names = list(self.frame["name"])

    @classmethod
    def from_lines(
        cls, prompts: list[list[int]], targets: list[list[int]], other_program: np.ndarray
    ) -> Data:
        """Lines only, without programs (a DDP rank needs no more to draw its batches)."""
        data = cls.__new__(cls)
        data._set_lines(prompts, targets, other_program)
        return data

    def _set_lines(
        self, prompts: list[list[int]], targets: list[list[int]], other_program: np.ndarray
    ) -> None:
        self.prompts, self.targets, self.other_program = prompts, targets, other_program
        self.labelled = np.array([len(t) > 1 for t in targets], dtype=bool)  # more than eos

    def __len__(self) -> int:
        """The number of lines (supervised examples)."""
        return len(self.prompts)

    @property
    def programs(self) -> int:
        return len(self.spans)

    def lines(self, programs: Sequence[int]) -> list[int]:
        """The line indices of ``programs``, program by program, in line order."""
        return [i for p in programs for i in range(*self.spans[p])]

    def batch(
        self, seed: int, phase: str, step: int, size: int, weights: tuple[float, float] = (1, 1)
    ) -> np.ndarray:
        """Line indices of ``step``: a function of (seed, phase, step) only, so resumable.

        ``weights = (label, other_program)``: a line that carries a label, and one that names
        another program, is that many times as likely to be drawn as noise.
        """
        p = None
        if tuple(weights) != (1, 1):
            p = np.where(self.labelled, weights[0], np.where(self.other_program, weights[1], 1.0))
        return _draw(seed, phase, step, size, len(self), p)

    def program_batch(self, seed: int, phase: str, step: int, size: int) -> np.ndarray:
        """Program indices of ``step`` (SCST rewards whole programs)."""
        return _draw(seed, phase, step, size, self.programs)


def _draw(
    seed: int, phase: str, step: int, size: int, n: int, weights: np.ndarray | None = None
) -> np.ndarray:
    gen = rng(seed, "cet", phase, step)
    p = None if weights is None else weights / weights.sum()
    return np.sort(gen.choice(n, size=min(size, n), replace=False, p=p))


def _micro(rows: np.ndarray, micro_batch: int) -> Iterator[np.ndarray]:
    for i in range(0, len(rows), micro_batch):
        yield rows[i : i + micro_batch]


# --------------------------------------------------------------------------- steps
def _optimizer(model: Any, lr: float) -> Any:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def _scheduler(optimizer: Any, p: CetPhaseParams) -> Any:
    from reprolab.guard.torch import lr_multiplier, make_scheduler

    return make_scheduler(
        optimizer,
        lambda step: lr_multiplier(step, p.steps, p.schedule, p.warmup_steps, p.min_lr_ratio),
    )


def _finite_step(model: Any, optimizer: Any, clip: float) -> float:
    """Clip, check, update: a non-finite gradient raises before anything changes."""
    import torch

    from reprolab.guard.torch import NonFiniteStep

    params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
    norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    if not np.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteStep(f"gradient norm {norm}")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm


def _supervised_step(
    model: Any,
    optimizer: Any,
    data: Data,
    rows: np.ndarray,
    micro_batch: int,
    pad_id: int,
    lm: bool,
) -> dict[str, float]:
    """One optimizer step over ``rows`` (accumulated in micro-batches), token-weighted."""
    from reprolab.models.cet.model import causal_lm_loss, collate, lm_collate
    from reprolab.guard.torch import NonFiniteStep

    optimizer.zero_grad(set_to_none=True)
    if lm:
        seqs = [data.prompts[i] + data.targets[i] for i in rows]
        weights = [len(s) - 1 for s in seqs]
    else:
        weights = [len(data.targets[i]) for i in rows]
    total_tokens = float(sum(weights))
    loss_sum = 0.0
    for part in _micro(rows, micro_batch):
        if lm:
            batch = lm_collate([data.prompts[i] + data.targets[i] for i in part], pad_id)
            tokens = sum(len(data.prompts[i]) + len(data.targets[i]) - 1 for i in part)
        else:
            batch = collate([(data.prompts[i], data.targets[i]) for i in part], pad_id)
            tokens = sum(len(data.targets[i]) for i in part)
        loss = causal_lm_loss(model, batch)
        if not bool(loss.isfinite()):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteStep(f"loss {float(loss)}")
        (loss * (tokens / total_tokens)).backward()
        loss_sum += float(loss.detach()) * tokens
    norm = _finite_step(model, optimizer, clip=1.0)
    return {"loss": loss_sum / total_tokens, "grad_norm": norm}


def _trainable_state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _load_trainable(model: Any, state: dict[str, Any]) -> None:
    import torch

    named = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in state.items():
            named[k].copy_(v)


def attach_configured(
    model: Any, base_dir: Path, a: CetAdapterParams, method: str, seed: int
) -> Any:
    """``train.cet.adapter`` adapters with ``method``: QLoRA loads its 4-bit base from
    ``base_dir``; LoRA wraps ``model`` in place."""
    from reprolab.models.cet.model import attach_adapters

    return attach_adapters(
        base_dir if method == "qlora" else model,
        method=method,  # type: ignore[arg-type]
        r=a.r,
        alpha=a.alpha,
        dropout=a.dropout,
        target_modules=list(a.target_modules),
        seed=seed,
    )


# --------------------------------------------------------------------------- decoding
class Decoder:
    """Greedy labels for line prompts, as text, in batches of ``eval_batch_size``; and the
    engineered context of whole programs (their lines' labels, assembled)."""

    def __init__(self, model: Any, tokenizer: Any, ids: dict[str, int], t: CetTrainParams):
        self.model, self.tokenizer, self.ids, self.t = model, tokenizer, ids, t

    def ids_to_text(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(
            [i for i in ids if i != self.ids["eos"]], skip_special_tokens=True
        )

    def greedy(self, prompts: Sequence[list[int]]) -> list[list[int]]:
        from reprolab.models.cet.model import generate

        out: list[list[int]] = []
        size = self.t.eval_batch_size
        for i in range(0, len(prompts), size):
            out.extend(
                generate(
                    self.model,
                    prompts[i : i + size],
                    max_new_tokens=self.t.max_new_tokens,
                    eos_id=self.ids["eos"],
                    pad_id=self.ids["pad"],
                    greedy=True,
                )
            )
        return out

    def labels(self, data: Data, programs: Sequence[int]) -> list[list[str]]:
        """The greedy label of every line of ``programs``, grouped by program."""
        texts = [
            self.ids_to_text(o)
            for o in self.greedy([data.prompts[i] for i in data.lines(programs)])
        ]
        return group_labels(data, programs, texts)


def group_labels(data: Data, programs: Sequence[int], texts: Sequence[str]) -> list[list[str]]:
    """Flat per-line texts (``data.lines(programs)`` order) split back into programs."""
    out, start = [], 0
    for p in programs:
        n = data.spans[p][1] - data.spans[p][0]
        out.append(list(texts[start : start + n]))
        start += n
    return out


def pass_rates(reconstructor: Any, contexts: Sequence[str], tests: Sequence[str]) -> list[float]:
    return reconstructor.score_many(list(zip(contexts, tests, strict=True)))


# --------------------------------------------------------------------------- phases
class CetTrainer:
    """The three phases over one model, one tokenizer and one reconstructor."""

    def __init__(
        self,
        params: Params,
        res: StageResources,
        live: Any,
        reconstructor: Any,
        checkpoint_dir: Path = CHECKPOINTS,
    ) -> None:
        from reprolab.datasets.contexts.features import encode_lines, load_tokenizer, special_ids

        self.t = params.train.cet
        self.seed = int_seed(params.seed, "train", MODEL)
        self.res, self.live, self.rec = res, live, reconstructor
        self.checkpoint_dir = Path(checkpoint_dir)
        # A named base model comes with its own tokenizer (same directory or hub id).
        tok_path = self.t.base_model or str(paths.features("contexts") / TOKENIZER)
        try:
            self.tokenizer = load_tokenizer(tok_path)
        except DependencyError as exc:
            if not self.t.base_model:
                raise
            raise DependencyError(
                f"train.cet.base_model = {self.t.base_model!r}: base model not found or "
                f"without its tokenizer ({exc}); give a save_pretrained directory holding the "
                "model and its tokenizer, a hub id with HF_HUB_OFFLINE=0 and network access, or "
                "leave base_model empty to build the base locally"
            ) from None
        self.ids = special_ids(self.tokenizer)
        f = params.contexts.features
        encode = None
        if self.t.base_model:

            def encode(raw: str, name: str, labels: list[str]) -> dict[str, Any]:
                return encode_lines(
                    self.tokenizer, raw, name, labels, f.max_prompt_tokens, f.max_target_tokens
                )

        self.train = Data(read_features("train"), encode)
        self.val = Data(read_features("val"), encode)
        self.test = Data(read_features("test"), encode)
        self.setup = train_fingerprint(params, MODEL)
        self.line_weights = (self.t.label_weight, self.t.other_program_weight)
        self.events: list[str] = []
        self.seconds: dict[str, float] = {}
        self.live_step = 0

    # ---------------------------------------------------------------- logging
    def log(self, phase: str, logs: dict[str, float]) -> None:
        for key, value in sorted(logs.items()):
            self.live.log_metric(f"{phase}/{key}", float(value))
        self.live.next_step()
        self.live_step += 1

    def _phase(
        self,
        phase: str,
        model: Any,
        optimizer: Any,
        p: CetPhaseParams,
        step_fn: Any,
        extra_state: Any = None,
        after_step: Any = None,
        stop: Any = None,
    ) -> None:
        """``p.steps`` guarded steps; the phase's schedule advances after every step."""
        from reprolab.models.cet.model import rng_state, set_rng_state
        from reprolab.guard.torch import guarded_steps, set_lr

        scheduler = _scheduler(optimizer, p)

        def state() -> dict[str, Any]:
            out = {
                "weights": _trainable_state(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
            }
            if extra_state is not None:
                out["extra"] = extra_state[0]()
            return out

        def restore(saved: dict[str, Any]) -> None:
            _load_trainable(model, saved["weights"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            set_rng_state(saved["rng"])
            if extra_state is not None:
                extra_state[1](saved["extra"])

        bar = self.res.progress(range(p.steps), p.steps, phase)
        it = iter(bar)

        def on_step(step: int, logs: dict[str, float]) -> None:
            next(it, None)
            # learning_rate: the guard's (peak) rate; lr: the scheduled rate this step used
            self.log(phase, {**logs, "lr": optimizer.param_groups[0]["lr"]})
            scheduler.step()

        start = time.perf_counter()
        gs = guarded_steps(
            phase=phase,
            steps=p.steps,
            batch_size=p.batch_size,
            learning_rate=p.learning_rate,
            step_fn=step_fn,
            set_learning_rate=lambda lr: set_lr(optimizer, lr, scheduler),
            state=state,
            restore=restore,
            checkpoint_dir=self.checkpoint_dir,
            checkpoint_every=self.t.checkpoint_every,
            setup=self.setup,
            guard=self.t.guard,
            on_step=on_step,
            after_step=after_step,
            stop=stop,
        )
        for _ in it:  # close the progress bar (a resumed phase skips steps)
            pass
        self.seconds[phase] = time.perf_counter() - start
        self.events.extend(f"{phase}: {e}" for e in gs.events)

    def pretrain(self) -> Any:
        """Phase 1: the base LM, all parameters, on training-split text."""
        from reprolab.models.cet.model import build_base_model, load_base_model

        t = self.t
        if t.base_model:
            model = load_base_model(t.base_model)
        else:
            m = t.model
            model = build_base_model(
                vocab_size=len(self.tokenizer),
                arch=m.arch,
                hidden_size=m.hidden_size,
                num_layers=m.num_layers,
                num_heads=m.num_heads,
                num_kv_heads=m.num_kv_heads,
                intermediate_size=m.intermediate_size,
                max_positions=m.max_positions,
                pad_id=self.ids["pad"],
                bos_id=self.ids["bos"],
                eos_id=self.ids["eos"],
                seed=self.seed,
            )
        self._supervised("pretrain", model, t.pretrain, lm=True)
        return model

    def _supervised(self, phase: str, model: Any, p: CetPhaseParams, lm: bool) -> None:
        """A supervised phase: LM loss on every token (``lm``) or on the target only."""
        model.train()
        optimizer = _optimizer(model, p.learning_rate)

        def step_fn(step: int, micro: int) -> dict[str, float]:
            rows = self.train.batch(self.seed, phase, step, p.batch_size, self.line_weights)
            return _supervised_step(model, optimizer, self.train, rows, micro, self.ids["pad"], lm)

        self._phase(phase, model, optimizer, p, step_fn)

    def attach(self, model: Any, base_dir: Path, method: str) -> Any:
        adapted = attach_configured(model, base_dir, self.t.adapter, method, self.seed)
        if adapted.method != method:
            self.events.append(f"adapter: {method} unavailable, trained {adapted.method}")
        return adapted

    def sft(self, model: Any, base_dir: Path, adapter_method: str) -> None:
        """Phase 2: adapters learn raw -> gold (loss on the target tokens only).

        ``adapter_method`` is the method actually attached (QLoRA may have fallen back).
        """
        if self.t.distributed == "ddp":
            self.sft_ddp(model, base_dir, adapter_method)
        else:
            self._supervised("sft", model, self.t.sft, lm=False)

    def sft_ddp(self, model: Any, base_dir: Path, adapter_method: str) -> None:
        """Phase 2 over ``nproc`` DDP processes (see :mod:`reprolab.guard.ddp`)."""
        import torch

        from reprolab.guard.ddp import launch
        from reprolab.guard.checkpoint import text_fingerprint

        t = self.t  # params validation guarantees a row per process (sft.batch_size >= nproc)
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        job = self.checkpoint_dir / "ddp_job.pt"
        result = self.checkpoint_dir / "ddp_result.pt"
        result.unlink(missing_ok=True)
        checkpoint = self.checkpoint_dir / "sft_ddp.pt"
        torch.save(
            {
                "base_dir": str(base_dir),
                "adapter": self.t.adapter,
                "method": adapter_method,
                "sft": t.sft,
                "seed": self.seed,
                "threads": t.threads,
                "pad_id": self.ids["pad"],
                "line_weights": self.line_weights,
                "other_program": self.train.other_program,
                "prompts": self.train.prompts,
                "targets": self.train.targets,
                "result": str(result),
                "checkpoint": str(checkpoint),
                "checkpoint_every": t.checkpoint_every,
                "fingerprint": text_fingerprint(f"sft_ddp|{t.nproc}|{adapter_method}|{self.setup}"),
            },
            job,
        )
        start = time.perf_counter()
        launch(ddp_sft_job, t.nproc, str(job))
        out = torch.load(result, weights_only=False)
        self.events.extend(f"sft: {e}" for e in out["events"])
        if out["interrupted"] is not None:
            step, signum = out["interrupted"]
            raise TrainingInterrupted(
                f"sft: interrupted by signal {signum} after step {step}/{t.sft.steps}; "
                f"checkpoint saved to {checkpoint}, rerun to resume",
                epoch=step,
                signum=signum,
                checkpoint_dir=self.checkpoint_dir,
            )
        if out["method"] != adapter_method:
            raise PipelineError(
                f"ddp: the ranks trained {out['method']} adapters, the stage holds "
                f"{adapter_method}: bitsandbytes differs between processes"
            )
        _load_trainable(model, out["weights"])
        for logs in out["logs"]:
            self.log("sft", logs)
        self.seconds["sft"] = time.perf_counter() - start
        self.events.append(f"sft: data-parallel over {t.nproc} processes ({out['method']})")

    @staticmethod
    def _contexts(data: Data, programs: Sequence[int], decoder: Decoder, out: Any) -> list[str]:
        """Decoded line outputs (``data.lines(programs)`` order) assembled per program."""
        texts = [decoder.ids_to_text(o) for o in out]
        return [assemble_context(x) for x in group_labels(data, programs, texts)]

    def val_pass_rate(self, decoder: Decoder, programs: np.ndarray) -> float:
        contexts = [assemble_context(x) for x in decoder.labels(self.val, programs)]
        tests = [self.val.tests[i] for i in programs]
        return float(np.mean(pass_rates(self.rec, contexts, tests)))

    def scst(self, model: Any) -> dict[str, Any]:
        """Phase 3: self-critical sequence training with validation rollbacks."""
        import torch

        from reprolab.models.cet.model import generate, scst_loss

        t, s = self.t, self.t.scst
        model.train()
        optimizer = _optimizer(model, s.learning_rate)
        decoder = Decoder(model, self.tokenizer, self.ids, t)
        gen = torch.Generator().manual_seed(int_seed(self.seed, "scst", "sampling"))
        val_rows = np.sort(
            rng(self.seed, "cet", "val_subset").permutation(self.val.programs)[: s.val_programs]
        )
        track: dict[str, Any] = {"rollbacks": 0, "curve": []}
        track["best"] = self.val_pass_rate(decoder, val_rows) if s.steps else 0.0
        track["good"] = {"weights": _trainable_state(model), "optimizer": None}
        track["curve"].append({"step": 0, "val_pass_rate": track["best"]})

        def extra_get() -> dict[str, Any]:
            return {"track": copy.deepcopy(track), "generator": gen.get_state()}

        def extra_set(saved: dict[str, Any]) -> None:
            track.clear()
            track.update(saved["track"])
            gen.set_state(saved["generator"])

        def step_fn(step: int, micro: int) -> dict[str, float]:
            """One SCST update over the step's rows, ``micro`` rows per pass (the guard
            halves ``micro`` on out-of-memory; the samples then differ, the rule does not)."""
            from reprolab.guard.torch import NonFiniteStep

            programs = self.train.program_batch(self.seed, "scst", step, s.batch_size)
            common = {"max_new_tokens": t.max_new_tokens, "eos_id": self.ids["eos"]}
            optimizer.zero_grad(set_to_none=True)
            sums = {"loss": 0.0, "reward_sample": 0.0, "reward_greedy": 0.0}
            sums.update(advantage=0.0, kl=0.0)
            for part in _micro(programs, micro):
                lines = self.train.lines(part)
                prompts = [self.train.prompts[i] for i in lines]
                tests = [self.train.tests[i] for i in part]
                samples = generate(
                    model,
                    prompts,
                    **common,
                    pad_id=self.ids["pad"],
                    greedy=False,
                    temperature=s.temperature,
                    top_p=s.top_p,
                    generator=gen,
                )
                greedy = generate(model, prompts, **common, pad_id=self.ids["pad"], greedy=True)
                r_s, r_g = (
                    pass_rates(self.rec, self._contexts(self.train, part, decoder, out), tests)
                    for out in (samples, greedy)
                )
                # Every line of a program shares the program's reward.
                owner = torch.tensor(
                    [k for k, p in enumerate(part) for _ in range(*self.train.spans[p])]
                )
                loss, stats = scst_loss(
                    model,
                    prompts,
                    samples,
                    torch.tensor(r_s)[owner],
                    torch.tensor(r_g)[owner],
                    kl_coef=s.kl_coef,
                    pad_id=self.ids["pad"],
                )
                if not bool(loss.isfinite()):
                    optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteStep(f"loss {float(loss)}")
                share = len(part) / len(programs)  # the means over the step's programs
                (loss * share).backward()
                sums["loss"] += float(loss.detach()) * share
                sums["reward_sample"] += float(np.mean(r_s)) * share
                sums["reward_greedy"] += float(np.mean(r_g)) * share
                sums["advantage"] += float(np.mean(r_s) - np.mean(r_g)) * share
                sums["kl"] += stats["kl"] * share
            norm = _finite_step(model, optimizer, s.grad_clip)
            return {**sums, "grad_norm": norm, "cache_hit_rate": self.rec.hit_rate}

        def after_step(step: int, lr: float) -> float | None:
            if (step + 1) % s.val_every and step + 1 != s.steps:
                return None
            new_lr = None
            rate = self.val_pass_rate(decoder, val_rows)
            fell = rate < track["best"] - s.rollback_margin
            under = track["best"] >= s.rollback_floor > rate
            logs = {"val_pass_rate": rate, "rollbacks": track["rollbacks"]}
            if fell or under:
                _load_trainable(model, track["good"]["weights"])
                if track["good"]["optimizer"] is not None:
                    optimizer.load_state_dict(track["good"]["optimizer"])
                new_lr = lr * s.rollback_lr_factor
                track["rollbacks"] += 1
                why = "below the floor" if under else "below the best by more than the margin"
                self.events.append(
                    f"scst: step {step + 1}: validation pass rate {rate:.3f} {why} "
                    f"(best {track['best']:.3f}); rolled back, learning rate {new_lr:g}"
                )
                logs["rollbacks"] = track["rollbacks"]
            elif rate >= track["best"]:
                track["best"] = rate
                track["good"] = {
                    "weights": _trainable_state(model),
                    "optimizer": copy.deepcopy(optimizer.state_dict()),
                }
            track["curve"].append({"step": step + 1, **logs})
            self.log("scst_val", logs)
            return new_lr

        def stop() -> bool:
            return track["rollbacks"] > s.max_rollbacks

        self._phase("scst", model, optimizer, s, step_fn, (extra_get, extra_set), after_step, stop)
        # End on the best validated state (the last check may not have been the best).
        _load_trainable(model, track["good"]["weights"])
        return {
            "val_pass_rate_best": round(track["best"], 4),
            "rollbacks": track["rollbacks"],
            "curve": [
                {k: round(v, 4) if isinstance(v, float) else v for k, v in c.items()}
                for c in track["curve"]
            ],
        }

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, model: Any) -> dict[str, Any]:
        """The CET and the baselines on the test split (held-out templates)."""
        decoder = Decoder(model, self.tokenizer, self.ids, self.t)
        data = self.test
        programs = range(data.programs)
        labels = decoder.labels(data, programs)
        gold_labels = [json.loads(x) for x in data.frame["line_labels"]]
        pairs = [
            (a, b)
            for ps, gs in zip(labels, gold_labels, strict=True)
            for a, b in zip(ps, gs, strict=True)
        ]
        contexts = {"cet": [assemble_context(x) for x in labels]}
        contexts.update(baseline_contexts(data.frame))

        def tokens(text: str) -> int:
            return len(self.tokenizer.encode(text, add_special_tokens=False))

        raw_tokens = [tokens(x) for x in data.frame["raw"]]
        report: dict[str, Any] = {}
        for name, texts in contexts.items():
            rates = pass_rates(self.rec, texts, data.tests)
            report[name] = context_report(
                texts, data.gold, rates, [tokens(x) for x in texts], raw_tokens
            )
        # How often the CET's label of a line is exactly right (most lines' label is empty).
        report["cet"]["line_accuracy"] = round(float(np.mean([a == b for a, b in pairs])), 4)
        relevant = [(a, b) for a, b in pairs if b]
        report["cet"]["requirement_line_accuracy"] = round(
            float(np.mean([a == b for a, b in relevant])) if relevant else 1.0, 4
        )
        return report


def _rss_mib() -> float:
    return round(rss_bytes() / MIB, 1)


def adapter_probe(trainer: CetTrainer, base: Any, base_dir: Path) -> dict[str, Any]:
    """Trainable share, weight bytes, SFT step time and peak memory of LoRA and QLoRA on the
    same base. The peak is the growth of this process's peak RSS while the method's model is
    built (a float copy of the base, or the 4-bit base loaded from ``base_dir``) and trained
    for the probe steps: model, adapters, optimizer state and activations together."""
    from reprolab.models.cet.model import trainable_parameters
    from reprolab.core.resources import own_peak_rss_bytes, reset_peak_rss

    out: dict[str, Any] = {}
    steps = trainer.t.qlora_probe_steps
    for method in ("lora", "qlora"):
        resettable = reset_peak_rss()
        rss_before = rss_bytes()
        # QLoRA loads its own 4-bit base from base_dir; LoRA trains a float copy.
        model = trainer.attach(copy.deepcopy(base) if method == "lora" else None, base_dir, method)
        peft = model.model
        trainable, total = trainable_parameters(peft)
        weight_bytes = sum(p.numel() * p.element_size() for p in peft.parameters())
        optimizer = _optimizer(peft, trainer.t.sft.learning_rate)
        start = time.perf_counter()
        tokens = 0  # prompt and target tokens through the model (padding not counted)
        for step in range(steps):
            rows = trainer.train.batch(trainer.seed, "probe", step, trainer.t.sft.batch_size)
            tokens += sum(
                len(trainer.train.prompts[i]) + len(trainer.train.targets[i]) for i in rows
            )
            _supervised_step(
                peft, optimizer, trainer.train, rows, len(rows), trainer.ids["pad"], lm=False
            )
        seconds = time.perf_counter() - start
        out[method] = {
            "method_used": model.method,
            "trainable_parameters": trainable,
            "total_parameters": total,
            "trainable_share": round(trainable / total, 6),
            "weight_bytes": int(weight_bytes),
            "probe_steps": steps,
            "seconds_per_step": round(seconds / steps, 4) if steps else None,
            "train_tokens_per_s": round(tokens / seconds) if steps else None,
        }
        peak = own_peak_rss_bytes()
        out[method]["peak_rss_growth_mib"] = (
            round((peak - rss_before) / MIB, 1) if resettable and peak is not None else None
        )
        del model, peft, optimizer
    return out


def _quality(probe: dict[str, Any]) -> dict[str, Any]:
    """The deterministic part of the probe (the rest is timing: speed.json)."""
    keep = ("method_used", "trainable_parameters", "total_parameters", "trainable_share")
    return {m: {k: v[k] for k in keep} for m, v in probe.items()}


def train(params: Params, res: StageResources) -> None:
    from dvclive import Live
    from transformers.utils import logging as hf_logging

    from reprolab.models.cet.model import save_adapter, set_determinism
    from reprolab.datasets.contexts.reconstruct import Reconstructor

    hf_logging.disable_progress_bar()  # our own bars (tqdm) tell the story
    t = params.train.cet
    seed = int_seed(params.seed, "train", MODEL)
    set_determinism(seed, t.threads)
    live = Live(dir=str(METRICS_DIR / "live"), dvcyaml=False, save_dvc_exp=False)
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
        "adapters": _quality(probe),
        "cache_hit_rate": round(rec.hit_rate, 4),
        "goals": {
            k: {
                "goal": f"{op} {bound}",
                "reached": cet[k],
                "met": bool(cet[k] >= bound if op == ">=" else cet[k] <= bound),
            }
            for k, (op, bound) in GOALS.items()
        },
        "events": trainer.events,
    }
    write_json(METRICS_DIR / "metrics.json", report)
    write_json(
        METRICS_DIR / "speed.json",
        {
            "train_seconds": round(seconds, 3),
            "phase_seconds": {k: round(v, 3) for k, v in trainer.seconds.items()},
            "adapters": probe,
            "rss_mib_at_end": _rss_mib(),
        },
    )
    with contextlib.suppress(OSError):
        shutil.rmtree(CHECKPOINTS)


def ddp_sft_job(rank: int, world: int, job_path: str) -> None:
    """One DDP rank of phase 2: the same adapters, its shard of every step's batch.

    Rank 0 checkpoints every ``checkpoint_every`` steps (weights, optimizer, scheduler, every
    rank's RNG state, the logs so far); a run with the same fingerprint resumes there. A
    signal on any rank stops every rank after the same step, with a checkpoint.
    """
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from reprolab.guard.ddp import agree, save_rank0, shard
    from reprolab.models.cet.model import load_base_model, rng_state, set_determinism, set_rng_state
    from reprolab.guard.checkpoint import load_torch
    from reprolab.guard.signals import signals_to_flag

    job = torch.load(job_path, weights_only=False)
    set_determinism(job["seed"], job["threads"])
    a, p, base_dir = job["adapter"], job["sft"], Path(job["base_dir"])
    # The same adapters as the stage's own model: LoRA on the float base, or QLoRA.
    base = None if job["method"] == "qlora" else load_base_model(base_dir)
    adapted = attach_configured(base, base_dir, a, job["method"], job["seed"])
    model = adapted.model
    model.train()
    ddp = DistributedDataParallel(model)
    optimizer = _optimizer(model, p.learning_rate)
    scheduler = _scheduler(optimizer, p)
    data = Data.from_lines(job["prompts"], job["targets"], job["other_program"])
    checkpoint, every = Path(job["checkpoint"]), job["checkpoint_every"]
    logs: list[dict[str, float]] = []
    events: list[str] = []
    first = 0
    saved = load_torch(checkpoint, job["fingerprint"], events.append)
    if saved is not None:
        _load_trainable(model, saved["weights"])
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
            "weights": _trainable_state(model),
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
            out = _supervised_step(ddp, optimizer, data, rows, len(rows), job["pad_id"], lm=False)
            logs.append({**out, "lr": optimizer.param_groups[0]["lr"]})
            scheduler.step()
            if agree(flag.signum is not None):
                save(step + 1)
                interrupted = (step + 1, int(flag.signum or signal.SIGTERM))
                break
            if (step + 1) % every == 0 and step + 1 < p.steps:
                save(step + 1)
    weights = _trainable_state(model)
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
