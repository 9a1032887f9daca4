"""The context engineering transformer's trainer, in three guarded phases (``stage.py`` runs it
for train@cet).

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

import copy
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reprolab.core import paths
from reprolab.core.config import CetPhaseParams, Params
from reprolab.core.errors import DependencyError, PipelineError
from reprolab.core.resources import StageResources
from reprolab.core.seeding import int_seed, rng
from reprolab.datasets.contexts.read import TOKENIZER, read_features
from reprolab.datasets.contexts.render import assemble_context
from reprolab.guard.common.checkpoint import train_fingerprint
from reprolab.guard.common.live import LiveLog
from reprolab.guard.common.signals import TrainingInterrupted
from reprolab.models.cet.data import Data, micro_batches
from reprolab.models.cet.evaluate import Decoder, evaluate_contexts, group_labels, pass_rates
from reprolab.models.cet.steps import (
    attach_configured,
    finite_step,
    load_trainable,
    make_optimizer,
    phase_scheduler,
    supervised_step,
    trainable_state,
)

MODEL = "cet"
MODEL_DIR = paths.model_dir(MODEL)
METRICS_DIR = paths.train_metrics(MODEL)
CHECKPOINTS = paths.checkpoints(MODEL)
MIB = 1024 * 1024


# --------------------------------------------------------------------------- phases
class CetTrainer:
    """The three phases over one model, one tokenizer and one reconstructor."""

    def __init__(
        self,
        params: Params,
        res: StageResources,
        live: LiveLog,
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

    # ---------------------------------------------------------------- logging
    def log(self, phase: str, logs: dict[str, float]) -> None:
        self.live.step({f"{phase}/{key}": value for key, value in logs.items()})

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
        from reprolab.guard.torch.fit import guarded_steps, set_lr
        from reprolab.models.cet.model import rng_state, set_rng_state

        scheduler = phase_scheduler(optimizer, p)

        def state() -> dict[str, Any]:
            out = {
                "weights": trainable_state(model),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
            }
            if extra_state is not None:
                out["extra"] = extra_state[0]()
            return out

        def restore(saved: dict[str, Any]) -> None:
            load_trainable(model, saved["weights"])
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
            model = build_base_model(
                t.model,
                vocab_size=len(self.tokenizer),
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
        optimizer = make_optimizer(model, p.learning_rate)

        def step_fn(step: int, micro: int) -> dict[str, float]:
            rows = self.train.batch(self.seed, phase, step, p.batch_size, self.line_weights)
            return supervised_step(model, optimizer, self.train, rows, micro, self.ids["pad"], lm)

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
        """Phase 2 over ``nproc`` DDP processes (see :mod:`reprolab.guard.torch.ddp`)."""
        import torch

        from reprolab.guard.common.checkpoint import text_fingerprint
        from reprolab.guard.torch.ddp import launch
        from reprolab.models.cet.ddp import ddp_sft_job

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
                f"sft: interrupted ({signal.Signals(signum).name}) after step "
                f"{step}/{t.sft.steps}; "
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
        load_trainable(model, out["weights"])
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
        optimizer = make_optimizer(model, s.learning_rate)
        decoder = Decoder(model, self.tokenizer, self.ids, t)
        gen = torch.Generator().manual_seed(int_seed(self.seed, "scst", "sampling"))
        val_rows = np.sort(
            rng(self.seed, "cet", "val_subset").permutation(self.val.programs)[: s.val_programs]
        )
        track: dict[str, Any] = {"rollbacks": 0, "curve": []}
        track["best"] = self.val_pass_rate(decoder, val_rows) if s.steps else 0.0
        track["good"] = {"weights": trainable_state(model), "optimizer": None}
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
            from reprolab.guard.torch.fit import NonFiniteStep

            programs = self.train.program_batch(self.seed, "scst", step, s.batch_size)
            common = {"max_new_tokens": t.max_new_tokens, "eos_id": self.ids["eos"]}
            optimizer.zero_grad(set_to_none=True)
            sums = {"loss": 0.0, "reward_sample": 0.0, "reward_greedy": 0.0}
            sums.update(advantage=0.0, kl=0.0)
            for part in micro_batches(programs, micro):
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
            norm = finite_step(model, optimizer, s.grad_clip)
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
                load_trainable(model, track["good"]["weights"])
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
                    "weights": trainable_state(model),
                    "optimizer": copy.deepcopy(optimizer.state_dict()),
                }
            track["curve"].append({"step": step + 1, **logs})
            self.log("scst_val", logs)
            return new_lr

        def stop() -> bool:
            return track["rollbacks"] > s.max_rollbacks

        self._phase("scst", model, optimizer, s, step_fn, (extra_get, extra_set), after_step, stop)
        # End on the best validated state (the last check may not have been the best).
        load_trainable(model, track["good"]["weights"])
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
        return evaluate_contexts(decoder, self.rec, self.test)
