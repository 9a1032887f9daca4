"""Context Engineering Transformer (CET): a small causal LM, LoRA/QLoRA adapters, SFT and SCST.

Layout of a batch everywhere in this module: sequences are LEFT-padded (pad, ..., prompt,
target) with ``position_ids`` counted from the first real token. Left padding puts every
target at the right end, so the loss needs logits only for the last few positions
(``logits_to_keep``), and training, scoring and decoding see identical positions.

Determinism: on CPU, the same seed and thread count give bitwise-identical weights
(:func:`set_determinism`); sampling takes an explicit ``torch.Generator``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel, Qwen2Config

from reprolab.core.config import CetModelParams
from reprolab.core.errors import DependencyError, ValidationError
from reprolab.core.io import atomic_write_text

IGNORE_INDEX = -100  # label value that cross-entropy skips (prompt and padding positions)
ARCHS = {"llama": LlamaConfig, "qwen2": Qwen2Config}
Arch = Literal["llama", "qwen2"]
Method = Literal["lora", "qlora"]


# --------------------------------------------------------------------------- determinism
def set_determinism(seed: int, threads: int | None = None) -> None:
    """Seed python/numpy/torch and make torch refuse non-deterministic kernels."""
    # Needed by cuBLAS before deterministic mode is enabled; harmless on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (seeds the legacy global state other libs use)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False  # autotuning may pick different kernels per run
    if threads is not None:
        # Reductions split differently across threads: bitwise results need a fixed count.
        torch.set_num_threads(threads)


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a resumed run needs (for a checkpoint saved with ``torch.save``)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` captured (``generator`` too when both are given)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


# --------------------------------------------------------------------------- base model
def build_base_model(
    m: CetModelParams,
    *,
    vocab_size: int,
    pad_id: int,
    bos_id: int,
    eos_id: int,
    seed: int,
) -> PreTrainedModel:
    """A freshly initialised float32 causal LM (tied embeddings) shaped by ``m``; the token
    ids come from the tokenizer. Same seed -> same weights."""
    arch, hidden_size, num_heads, num_kv_heads = m.arch, m.hidden_size, m.num_heads, m.num_kv_heads
    if arch not in ARCHS:
        raise ValidationError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValidationError(
            f"hidden_size ({hidden_size}) must divide by num_heads ({num_heads}) and "
            f"num_heads by num_kv_heads ({num_kv_heads})"
        )
    config = ARCHS[arch](
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=m.num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=m.intermediate_size,
        max_position_embeddings=m.max_positions,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        tie_word_embeddings=True,
        use_cache=True,
    )
    # fork_rng: building a model must not move the caller's global random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model


def _looks_local(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else is meant as a filesystem path.
    return (
        Path(name).exists()
        or name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or "\\" in name
    )


def _quantization_config() -> Any:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )


def load_base_model(
    name_or_path: str | Path, *, quantize_4bit: bool = False, local_files_only: bool = True
) -> PreTrainedModel:
    """``from_pretrained`` a saved base model (float32, or NF4 4-bit when ``quantize_4bit``)."""
    name = str(name_or_path)
    local = _looks_local(name)
    how = (
        "save it with save_pretrained into a local directory, set HF_HUB_OFFLINE=0 with network "
        "access, or leave params.train.cet.base_model empty to build the base locally"
    )
    if local and not (Path(name).expanduser() / "config.json").is_file():
        raise DependencyError(f"base model not found at {name}: {how}")
    if quantize_4bit and not bitsandbytes_available():
        raise DependencyError("quantize_4bit needs bitsandbytes with 4-bit CPU/GPU kernels")
    kwargs: dict[str, Any] = {"dtype": torch.float32, "local_files_only": local or local_files_only}
    if quantize_4bit:
        kwargs["quantization_config"] = _quantization_config()
    try:
        return AutoModelForCausalLM.from_pretrained(
            str(Path(name).expanduser()) if local else name, **kwargs
        )
    except OSError as exc:
        raise DependencyError(
            f"base model {name!r} could not be loaded (offline or not on the hub): {how}"
        ) from exc


# --------------------------------------------------------------------------- adapters
@functools.lru_cache(maxsize=1)
def bitsandbytes_available() -> bool:
    """True if bitsandbytes imports and an NF4 matmul gives the dequantised result here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import bitsandbytes as bnb
            import bitsandbytes.functional as bnbf

            gen = torch.Generator().manual_seed(0)
            weight = torch.randn(16, 64, generator=gen)
            x = torch.randn(2, 64, generator=gen)
            packed, state = bnbf.quantize_4bit(weight, quant_type="nf4", compress_statistics=True)
            out = bnb.matmul_4bit(x, packed.t(), quant_state=state)
            ref = x @ bnbf.dequantize_4bit(packed, state).t()
            return bool(torch.allclose(out, ref, rtol=1e-4, atol=1e-4))
    except Exception:  # any import/kernel failure means "cannot use it", never a crash
        return False


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    # peft 0.21 calls a transformers 5 method that was renamed; the warning is not ours to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        yield


@dataclass
class Adapted:
    """A model with LoRA adapters and the method actually used (qlora may fall back)."""

    model: PeftModel
    method: Method


def _is_4bit(model: Any) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False))


def attach_adapters(
    model_or_dir: PreTrainedModel | str | Path,
    *,
    method: Method,
    r: int,
    alpha: float,
    dropout: float,
    target_modules: list[str],
    seed: int,
) -> Adapted:
    """Wrap a base model in fresh LoRA adapters (base frozen; a model passed in is modified).

    ``qlora`` loads the base 4-bit from a saved directory; without a working bitsandbytes it
    warns and falls back to plain LoRA on the float32 base (see ``Adapted.method``).
    """
    if method not in ("lora", "qlora"):
        raise ValidationError(f"adapter method must be 'lora' or 'qlora', got {method!r}")
    if not target_modules:
        raise ValidationError("target_modules must name at least one linear layer")
    used: Method = method
    if method == "qlora" and not bitsandbytes_available():
        warnings.warn(
            "bitsandbytes 4-bit kernels unavailable: falling back from QLoRA to plain LoRA",
            RuntimeWarning,
            stacklevel=2,
        )
        used = "lora"
    if isinstance(model_or_dir, str | Path):
        model = load_base_model(model_or_dir, quantize_4bit=used == "qlora")
    else:
        model = model_or_dir
        if used == "qlora" and not _is_4bit(model):
            raise ValidationError(
                "qlora needs a 4-bit base: pass the directory the base model was saved to"
            )
    if used == "qlora":
        # Freezes the base and upcasts non-4-bit params to float32 (already float32 here).
        # Gradient checkpointing off: these models are small, recomputation only costs time.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        bias="none",
    )
    with torch.random.fork_rng(devices=[]), _quiet_peft():
        torch.manual_seed(seed)  # LoRA A matrices are random; B starts at zero
        try:
            peft_model = get_peft_model(model, config)
        except ValueError as exc:
            raise ValidationError(f"cannot attach LoRA: {exc}".splitlines()[0]) from exc
    return Adapted(model=peft_model, method=used)


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) logical weights; a 4-bit packed tensor counts its unpacked size.

    Shared (tied) tensors count once. Quantisation constants (absmax, code book) are not
    counted: they are storage, not weights.
    """
    trainable = total = 0
    for param in model.parameters():
        quant_state = getattr(param, "quant_state", None)
        count = math.prod(quant_state.shape) if quant_state is not None else param.numel()
        total += count
        if param.requires_grad:
            trainable += count
    return trainable, total


def save_adapter(model: PeftModel, directory: str | Path) -> Path:
    """Write only the adapter weights + config (the base is saved separately)."""
    if not isinstance(model, PeftModel):
        raise ValidationError("save_adapter needs a PeftModel (use attach_adapters first)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    canonicalise_adapter_config(directory / "adapter_config.json")
    return directory


# peft keeps these as sets and writes them in set order, which follows the per-process string
# hash seed (PYTHONHASHSEED): two identical trainings would give different bytes.
_SET_VALUED = ("target_modules", "exclude_modules", "modules_to_save")


def canonicalise_adapter_config(path: Path) -> None:
    """Rewrite ``adapter_config.json`` with set-valued fields sorted and keys sorted."""
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in _SET_VALUED:
        value = config.get(key)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            config[key] = sorted(value)
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_adapter(base_model: PreTrainedModel, directory: str | Path, *, trainable: bool) -> Any:
    """Put saved adapters on ``base_model``; ``trainable=False`` loads them frozen."""
    directory = Path(directory)
    if not (directory / "adapter_config.json").is_file():
        raise DependencyError(
            f"adapter not found at {directory}: run the fine-tuning stage that writes it"
        )
    with _quiet_peft():
        return PeftModel.from_pretrained(base_model, str(directory), is_trainable=trainable)


# --------------------------------------------------------------------------- batches
def _left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    if not rows or any(len(row) == 0 for row in rows):
        raise ValidationError("every sequence needs at least one token")
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.as_tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row) :] = 1
    # Positions count real tokens only, so a padded row sees what it would see alone.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}


def collate(
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int
) -> dict[str, torch.Tensor]:
    """SFT batch of (prompt_ids, target_ids): labels only on target tokens (-100 elsewhere)."""
    if any(len(prompt) == 0 for prompt, _ in pairs):
        raise ValidationError("every prompt needs at least one token (bos)")
    batch = _left_pad([[*prompt, *target] for prompt, target in pairs], pad_id)
    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    width = labels.shape[1]
    for i, (_, target) in enumerate(pairs):
        if len(target):
            labels[i, width - len(target) :] = torch.as_tensor(target, dtype=torch.long)
    batch["labels"] = labels
    return batch


def lm_collate(texts_ids: Sequence[Sequence[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """LM pre-training batch: labels on every real token but each row's first (no context)."""
    batch = _left_pad(texts_ids, pad_id)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
    first = batch["attention_mask"].argmax(-1)  # column of each row's first real token
    labels[torch.arange(len(texts_ids)), first] = IGNORE_INDEX
    batch["labels"] = labels
    return batch


# --------------------------------------------------------------------------- losses
def _token_logprobs(
    model: Any, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log p of each labelled token and the label mask, over the trailing labelled columns."""
    labels = batch["labels"]
    has_label = (labels != IGNORE_INDEX).any(0)
    if not bool(has_label.any()):
        raise ValidationError("batch has no labelled tokens")
    # Column 0 can never be predicted; left padding puts all labels in the last columns.
    start = max(int(has_label.int().argmax()), 1)
    keep = labels.shape[1] - start + 1
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        use_cache=False,
        logits_to_keep=keep,
    ).logits[:, :-1]
    targets = labels[:, start:]
    mask = targets != IGNORE_INDEX
    logp = torch.log_softmax(logits.float(), dim=-1)
    token_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return token_logp * mask, mask


def causal_lm_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean negative log-likelihood over labelled (target) tokens of the batch."""
    token_logp, mask = _token_logprobs(model, batch)
    return -token_logp.sum() / mask.sum()


def sequence_logprobs(
    model: Any,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int,
) -> torch.Tensor:
    """[batch] sum of log p(completion | prompt), eos included when present; keeps grad."""
    if len(prompts) != len(completions):
        raise ValidationError("prompts and completions differ in length")
    if any(len(c) == 0 for c in completions):
        raise ValidationError("every completion needs at least one token")
    token_logp, _ = _token_logprobs(
        model, collate(list(zip(prompts, completions, strict=True)), pad_id)
    )
    return token_logp.sum(-1)


def scst_loss(
    model: Any,
    prompts: Sequence[Sequence[int]],
    samples: Sequence[Sequence[int]],
    reward_sample: torch.Tensor,
    reward_greedy: torch.Tensor,
    *,
    kl_coef: float,
    pad_id: int,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Self-critical policy gradient with the greedy reward as baseline, plus a KL penalty.

    ``pg = -mean((r_sample - r_greedy).detach() * log p(sample))``. The KL penalty is
    ``kl_coef * mean(0.5 * (log p(sample) - log p_base(sample))**2)``: its gradient,
    ``(log p - log p_base) * grad log p``, is the score-function gradient of KL(policy || base)
    for on-policy samples. (``mean(log p - log p_base)`` itself has zero expected gradient,
    so it would not regularise; it is reported as ``kl``, the sequence-level KL estimate.)
    The base is the same network under ``disable_adapter()``, so no second copy is held.
    """
    advantage = (reward_sample - reward_greedy).detach().to(torch.float32).flatten()
    if advantage.numel() != len(samples):
        raise ValidationError(f"{advantage.numel()} rewards for {len(samples)} samples")
    logp = sequence_logprobs(model, prompts, samples, pad_id)
    pg_loss = -(advantage.to(logp.device) * logp).mean()
    stats = {"advantage": float(advantage.mean()), "logp": float(logp.detach().mean())}
    if not hasattr(model, "disable_adapter"):
        if kl_coef:
            raise ValidationError("kl_coef > 0 needs a model with adapters (PeftModel)")
        stats.update(kl=float("nan"), pg_loss=float(pg_loss.detach()), kl_loss=0.0)
        return pg_loss, stats
    with torch.no_grad(), model.disable_adapter():
        base_logp = sequence_logprobs(model, prompts, samples, pad_id)
    log_ratio = logp - base_logp
    kl_loss = 0.5 * log_ratio.pow(2).mean()
    loss = pg_loss + kl_coef * kl_loss if kl_coef else pg_loss
    stats.update(
        kl=float(log_ratio.detach().mean()),
        pg_loss=float(pg_loss.detach()),
        kl_loss=float(kl_loss.detach()),
    )
    return loss, stats


# --------------------------------------------------------------------------- decoding
def _top_p_sample(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
    # Drop a token once the mass of the tokens before it already reaches top_p (keeps >= 1).
    sorted_probs = sorted_probs.masked_fill(sorted_probs.cumsum(-1) - sorted_probs >= top_p, 0.0)
    device = generator.device if generator is not None else sorted_probs.device
    choice = torch.multinomial(sorted_probs.to(device), 1, generator=generator)
    return order.gather(-1, choice.to(order.device)).squeeze(-1)


def generate(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    greedy: bool,
    temperature: float = 0.7,
    top_p: float = 0.9,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Batched decoding with a KV cache; each row stops after its eos (kept in the output).

    Prompts are left-padded with real-token positions, so a prompt decodes the same alone or
    in a batch. Sampling draws only from ``generator``: same generator state, same samples.
    """
    if max_new_tokens < 1:
        raise ValidationError("max_new_tokens must be >= 1")
    if not greedy and (temperature <= 0 or not 0 < top_p <= 1):
        raise ValidationError("sampling needs temperature > 0 and 0 < top_p <= 1")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _decode(
                model, prompts, max_new_tokens, eos_id, pad_id, greedy, temperature, top_p,
                generator,
            )  # fmt: skip
    finally:
        model.train(was_training)


def _decode(
    model: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    greedy: bool,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> list[list[int]]:
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in _left_pad(prompts, pad_id).items()}
    attention_mask, position_ids = batch["attention_mask"], batch["position_ids"][:, -1:]
    out = model(**batch, use_cache=True, logits_to_keep=1)
    finished = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    steps: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        logits = out.logits[:, -1]
        if greedy:
            token = logits.argmax(-1)
        else:
            token = _top_p_sample(logits, temperature, top_p, generator)
        token = token.masked_fill(finished, pad_id)
        steps.append(token)
        finished |= token == eos_id
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(prompts), 1)], 1)
        position_ids = position_ids + 1
        out = model(
            input_ids=token.unsqueeze(-1),
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=out.past_key_values,
            use_cache=True,
        )
    return [_until_eos(row, eos_id) for row in torch.stack(steps, 1).tolist()]


def _until_eos(row: list[int], eos_id: int) -> list[int]:
    return row[: row.index(eos_id) + 1] if eos_id in row else row
