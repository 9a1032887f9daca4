"""CET speed, measured on the saved model (``models/cet``) in one run:

* generation: greedy tokens per second with the adapter, and with it switched off (the
  base model alone, ``disable_adapter``), on the same line prompts;
* contexts engineered per second end to end (prompt -> labels -> assembled context ->
  reconstructor -> the program's tests), against the keyword heuristic's contexts through
  the same reconstructor;
* a supervised step with fresh LoRA adapters on the float base and with QLoRA on the 4-bit
  base (falls back to LoRA where bitsandbytes cannot run; ``method_used`` says).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.seeding import int_seed


def _generated_tokens(decoder: Any, prompts: list[list[int]]) -> tuple[int, float]:
    start = time.perf_counter()
    out = decoder.greedy(prompts)
    return sum(len(o) for o in out), time.perf_counter() - start


def generation(decoder: Any, prompts: list[list[int]]) -> dict[str, Any]:
    """Greedy tokens per second, adapter on and off, on ``prompts``."""
    decoder.greedy(prompts[:1])  # first call: allocations, kernels
    tokens, seconds = _generated_tokens(decoder, prompts)
    with decoder.model.disable_adapter():
        base_tokens, base_seconds = _generated_tokens(decoder, prompts)
    rates = {"cet": tokens / seconds, "base": base_tokens / base_seconds}
    return {
        "prompts": len(prompts),
        "tokens": {"cet": tokens, "base": base_tokens},
        "tokens_per_s": {k: round(v, 1) for k, v in rates.items()},
        "cet_over_base": round(rates["cet"] / rates["base"], 4),
    }


def contexts_end_to_end(decoder: Any, data: Any, programs: list[int], workers: int) -> dict:
    """Programs per second from prompt to test result: the CET's contexts and the
    heuristic's, each through a fresh reconstructor (no cached results)."""
    from reprolab.datasets.contexts.heuristic import heuristic_context
    from reprolab.datasets.contexts.reconstruct import Reconstructor
    from reprolab.datasets.contexts.render import assemble_context

    frame = data.frame.iloc[programs]
    tests = [data.tests[p] for p in programs]
    seconds = {}
    with Reconstructor(workers=workers) as rec:
        start = time.perf_counter()
        contexts = [assemble_context(x) for x in decoder.labels(data, programs)]
        rec.score_many(list(zip(contexts, tests, strict=True)))
        seconds["cet"] = time.perf_counter() - start
    with Reconstructor(workers=workers) as rec:
        start = time.perf_counter()
        pairs = zip(frame["raw"], frame["name"], strict=True)
        contexts = [heuristic_context(raw, name) for raw, name in pairs]
        rec.score_many(list(zip(contexts, tests, strict=True)))
        seconds["heuristic"] = time.perf_counter() - start
    rates = {k: len(programs) / v for k, v in seconds.items()}
    return {
        "programs": len(programs),
        "contexts_per_s": {k: round(v, 3) for k, v in rates.items()},
        "cet_over_heuristic": round(rates["cet"] / rates["heuristic"], 4),
    }


def adapter_steps(params: Params, tokenizer: Any, steps: int) -> dict[str, Any]:
    """Median seconds of a supervised step with fresh LoRA and QLoRA adapters, same rows."""
    from reprolab.datasets.contexts.features import special_ids
    from reprolab.models.cet.model import load_base_model
    from reprolab.models.cet.steps import attach_configured, make_optimizer, supervised_step
    from reprolab.validate.cet import split_data

    t = params.train.cet
    base_dir = paths.model_dir("cet") / "base"
    train = split_data(params, tokenizer, "train")
    pad, seed = special_ids(tokenizer)["pad"], int_seed(params.seed, "benchmark", "cet")
    out: dict[str, Any] = {}
    for method in ("lora", "qlora"):
        base = load_base_model(base_dir) if method == "lora" else None
        adapted = attach_configured(base, base_dir, t.adapter, method, seed)
        optimizer = make_optimizer(adapted.model, t.sft.learning_rate)
        times = []
        for step in range(steps + 1):  # the first step allocates optimizer state
            rows = train.batch(seed, "benchmark", step, t.sft.batch_size)
            start = time.perf_counter()
            supervised_step(adapted.model, optimizer, train, rows, len(rows), pad, lm=False)
            if step:
                times.append(time.perf_counter() - start)
        out[method] = {
            "method_used": adapted.method,
            "step_s_median": round(float(np.median(times)), 4),
        }
        del adapted, optimizer, base
    out["steps"] = steps
    out["qlora_over_lora"] = round(out["qlora"]["step_s_median"] / out["lora"]["step_s_median"], 4)
    return out


def run(params: Params, programs: int, steps: int) -> dict[str, Any]:
    from reprolab.datasets.contexts.features import special_ids
    from reprolab.models.cet.evaluate import Decoder
    from reprolab.models.cet.model import set_determinism
    from reprolab.validate.cet import load_cet, split_data

    t = params.train.cet
    set_determinism(int_seed(params.seed, "benchmark", "cet"), t.threads)
    model, tokenizer = load_cet(params)
    decoder = Decoder(model, tokenizer, special_ids(tokenizer), t)
    data = split_data(params, tokenizer)
    chosen = list(range(min(programs, data.programs)))
    prompts = [data.prompts[i] for i in data.lines(chosen)]
    return {
        "generation": generation(decoder, prompts),
        "end_to_end": contexts_end_to_end(decoder, data, chosen, t.reconstruct_workers),
        "adapters": adapter_steps(params, tokenizer, steps),
    }
