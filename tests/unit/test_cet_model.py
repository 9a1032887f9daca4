"""CET model: batching and labels, base save/load, LoRA SFT (learns, bitwise reproducible),
KV-cache decoding, SCST gradients and the KL penalty, adapter round trips and QLoRA on CPU.

A toy task throughout: the prompt is bos + 12 tokens + sep, three "requirement" tokens from
a small vocabulary hidden among noise tokens; the target is those three in order, then eos.
Models are tiny (hidden 32, 2 layers); one base is pre-trained briefly (phase 1) and saved,
as the pipeline does, and the LoRA tests start from it: a frozen random base is too weak."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from reprolab.core.errors import DependencyError, ValidationError
from reprolab.models.cet import model as cet
from tests.tiny import repo_params

VOCAB, PAD, BOS, EOS, SEP = 48, 0, 1, 2, 3
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module", autouse=True)
def _deterministic() -> Iterator[None]:
    """set_determinism flips process-wide switches; put them back for the other test files.

    One thread: these models are too small to gain from more, and on a shared CPU extra
    threads stall waiting for each other."""
    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    cet.set_determinism(0, threads=1)
    yield
    torch.use_deterministic_algorithms(strict)
    torch.set_num_threads(threads)


KEYS = range(SEP + 1, 12)  # the "requirement" vocabulary; noise is 12..VOCAB-1


def _task(n: int, seed: int) -> list[tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        body = torch.randint(KEYS.stop, VOCAB, (12,), generator=g)
        where = torch.randperm(12, generator=g)[:3].sort().values
        keys = torch.randint(KEYS.start, KEYS.stop, (3,), generator=g)
        body[where] = keys
        pairs.append(([BOS, *body.tolist(), SEP], [*keys.tolist(), EOS]))
    return pairs


TRAIN = _task(64, seed=0)


def _base(seed: int = 0, arch: cet.Arch = "llama") -> Any:
    m = replace(repo_params().train.cet.model,
        arch=arch, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
        intermediate_size=64, max_positions=64,
    )  # fmt: skip
    return cet.build_base_model(m, vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, eos_id=EOS, seed=seed)


def _lora(model_or_dir: Any, method: cet.Method = "lora", seed: int = 0) -> cet.Adapted:
    return cet.attach_adapters(
        model_or_dir, method=method, r=8, alpha=16, dropout=0.0, target_modules=TARGETS,
        seed=seed,
    )  # fmt: skip


def _train(model: Any, batches: list[dict[str, torch.Tensor]], lr: float) -> list[float]:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for batch in batches:
        loss = cet.causal_lm_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _sft(model: Any, steps: int, lr: float = 1e-2, batch: int = 16) -> list[float]:
    starts = [(step * batch) % len(TRAIN) for step in range(steps)]
    return _train(model, [cet.collate(TRAIN[i : i + batch], PAD) for i in starts], lr)


def _lora_state(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


@pytest.fixture(scope="module")
def phase1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """Phase 1: brief full-parameter LM pre-training on raw prompts, saved with save_pretrained."""
    texts = [prompt for prompt, _ in _task(64, seed=11)]
    batches = [cet.lm_collate(texts[i : i + 16], PAD) for i in range(0, 64, 16)] * 15
    model = _base()
    losses = _train(model, batches, lr=1e-2)
    directory = tmp_path_factory.mktemp("cet") / "base"
    model.save_pretrained(directory)
    return directory, losses


def _pretrained(phase1: tuple[Path, list[float]]) -> Any:
    return cet.load_base_model(str(phase1[0]))


@pytest.fixture(scope="module")
def trained(phase1: tuple[Path, list[float]]) -> Any:
    """A LoRA model after SFT on the toy task (shared by decoding and SCST tests)."""
    model = _lora(_pretrained(phase1)).model
    _sft(model, steps=40)
    return model


# --------------------------------------------------------------------------- batches
def test_collate_labels_only_on_target_tokens() -> None:
    pairs = [([1, 5, 6, 3], [7, 8, 2]), ([1, 9, 3], [10, 2]), ([1, 4, 4, 4, 4, 3], [11, 2])]
    b = cet.collate(pairs, PAD)
    width = max(len(p) + len(t) for p, t in pairs)
    assert b["input_ids"].shape == b["labels"].shape == (3, width)
    for i, (prompt, target) in enumerate(pairs):
        pad = width - len(prompt) - len(target)
        assert b["input_ids"][i].tolist() == [PAD] * pad + prompt + target
        assert b["labels"][i].tolist() == [-100] * (pad + len(prompt)) + target
        assert b["attention_mask"][i].tolist() == [0] * pad + [1] * (len(prompt) + len(target))
        assert b["position_ids"][i, pad:].tolist() == list(range(len(prompt) + len(target)))


def test_lm_collate_labels_every_predictable_token() -> None:
    b = cet.lm_collate([[1, 5, 6, 7], [1, 8]], PAD)
    assert b["labels"].tolist() == [[-100, 5, 6, 7], [-100, -100, -100, 8]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]


def test_collate_rejects_empty_prompt() -> None:
    with pytest.raises(ValidationError, match="prompt"):
        cet.collate([([], [5, 2])], PAD)


def test_loss_is_mean_nll_of_target_tokens_and_padding_invariant() -> None:
    model = _base()
    pairs = [(p, t[: 1 + i % 4]) for i, (p, t) in enumerate(TRAIN[:5])]  # ragged targets
    prompts, targets = [p for p, _ in pairs], [t for _, t in pairs]
    batched = cet.sequence_logprobs(model, prompts, targets, PAD)
    single = torch.cat([cet.sequence_logprobs(model, [p], [t], PAD) for p, t in pairs])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    assert batched.requires_grad
    loss = cet.causal_lm_loss(model, cet.collate(pairs, PAD))
    n_tokens = sum(len(t) for t in targets)
    torch.testing.assert_close(loss, -batched.sum() / n_tokens)


# --------------------------------------------------------------------------- base model
def test_build_base_model_is_seeded_and_leaves_global_rng_alone() -> None:
    before = torch.get_rng_state()
    a, b, c = _base(seed=1), _base(seed=1), _base(seed=2)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.embed_tokens.weight"], sc["model.embed_tokens.weight"])
    assert a.dtype == torch.float32


def test_build_base_model_validates_heads() -> None:
    with pytest.raises(ValidationError, match="num_heads"):
        m = replace(repo_params().train.cet.model,
            arch="llama", hidden_size=30, num_layers=1, num_heads=4, num_kv_heads=2,
            intermediate_size=64, max_positions=64,
        )  # fmt: skip
        cet.build_base_model(m, vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, eos_id=EOS, seed=0)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_saved_base_model_loads_with_identical_logits(tmp_path: Path, arch: cet.Arch) -> None:
    model = _base(arch=arch)
    model.save_pretrained(tmp_path / "base")
    loaded = cet.load_base_model(str(tmp_path / "base"))
    ids = torch.tensor([TRAIN[0][0] + TRAIN[0][1]])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)


@pytest.mark.parametrize("name", ["missing-dir", "some-org/not-downloaded"])
def test_unavailable_base_model_is_one_line_dependency_error(tmp_path: Path, name: str) -> None:
    target = str(tmp_path / name) if name == "missing-dir" else name
    with pytest.raises(DependencyError) as exc:
        cet.load_base_model(target)
    message = str(exc.value)
    assert "\n" not in message and target in message
    assert "save_pretrained" in message and "HF_HUB_OFFLINE=0" in message
    assert "base_model empty" in message


# --------------------------------------------------------------------------- SFT
def test_lm_pretraining_lowers_loss(phase1: tuple[Path, list[float]]) -> None:
    losses = phase1[1]
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:2])


def test_sft_lowers_loss_and_is_bitwise_reproducible(phase1: tuple[Path, list[float]]) -> None:
    runs = []
    for _ in range(2):
        model = _lora(_pretrained(phase1)).model
        losses = _sft(model, steps=30)
        runs.append((losses, _lora_state(model)))
    (losses, state), (losses2, state2) = runs
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3])
    assert losses == losses2
    assert state.keys() == state2.keys() and len(state) > 0
    assert all(torch.equal(state[k], state2[k]) for k in state)
    # A different adapter seed is a different run (so the equality above is not vacuous).
    other = _lora(_pretrained(phase1), seed=1).model
    _sft(other, steps=2)
    assert any(not torch.equal(state[k], v) for k, v in _lora_state(other).items())


# --------------------------------------------------------------------------- decoding
PROMPTS = [p for p, _ in _task(5, seed=7)]
PROMPTS[1] = [*PROMPTS[1][:4], SEP]  # different lengths, so left padding is exercised


def _gen(model: Any, prompts: list[list[int]], **kw: Any) -> list[list[int]]:
    kw = {"max_new_tokens": 8, "eos_id": EOS, "pad_id": PAD, "greedy": True, **kw}
    return cet.generate(model, prompts, **kw)


def test_greedy_is_deterministic_and_batch_equals_single(trained: Any) -> None:
    batch = _gen(trained, PROMPTS)
    assert batch == _gen(trained, PROMPTS)
    assert batch == [_gen(trained, [p])[0] for p in PROMPTS]
    assert any(len(row) == 4 and row[-1] == EOS for row in batch)  # it learnt the task format


def test_cached_decoding_matches_full_forward() -> None:
    model = _base().eval()
    out = _gen(model, PROMPTS[:2], max_new_tokens=6)
    for prompt, row in zip(PROMPTS[:2], out, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([prompt + row])).logits[0, len(prompt) - 1 : -1]
        assert logits.argmax(-1).tolist() == row


def test_sampling_is_reproducible_with_a_generator(trained: Any) -> None:
    def sample(seed: int) -> list[list[int]]:
        return _gen(trained, PROMPTS, greedy=False, temperature=1.5, top_p=1.0,
                    generator=torch.Generator().manual_seed(seed))  # fmt: skip

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.06, 0.04]])).repeat(500, 1)
    g = torch.Generator().manual_seed(0)
    drawn = cet._top_p_sample(logits, temperature=1.0, top_p=0.8, generator=g)
    assert set(drawn.tolist()) == {0, 1}


class _EosAt(torch.nn.Module):
    """Wraps a model and forces eos once a row's position reaches its limit."""

    def __init__(self, inner: Any, limits: list[int]) -> None:
        super().__init__()
        self.inner = inner
        self.limits = torch.tensor(limits)
        self.calls = 0

    def forward(self, **kw: Any) -> Any:
        self.calls += 1
        out = self.inner(**kw)
        logits = out.logits.clone()
        logits[:, -1, EOS] += 1e4 * (kw["position_ids"][:, -1] >= self.limits)
        return SimpleNamespace(logits=logits, past_key_values=out.past_key_values)


def test_eos_stops_each_row_separately() -> None:
    prompts = [PROMPTS[0], PROMPTS[0]]
    start = len(PROMPTS[0]) - 1  # position of the last prompt token
    model = _EosAt(_base(), limits=[start + 2, start + 5])
    out = _gen(model, prompts, max_new_tokens=10)
    assert [len(row) for row in out] == [3, 6]
    assert out[0][-1] == EOS == out[1][-1]
    assert EOS not in out[0][:-1] + out[1][:-1]
    assert model.calls == 6  # prefill + 5 steps: decoding ends once every row has its eos


def test_generate_restores_training_mode(trained: Any) -> None:
    trained.train()
    _gen(trained, PROMPTS[:1], max_new_tokens=2)
    assert trained.training
    trained.eval()
    _gen(trained, PROMPTS[:1], max_new_tokens=2)
    assert not trained.training


# --------------------------------------------------------------------------- SCST
def _grads(model: Any) -> list[torch.Tensor]:
    return [p.grad for p in model.parameters() if p.requires_grad]


def test_zero_advantage_gives_zero_gradient() -> None:
    model = _lora(_base()).model
    samples = _gen(model, PROMPTS, greedy=False, generator=torch.Generator().manual_seed(0))
    r = torch.full((len(PROMPTS),), 0.5)
    loss, stats = cet.scst_loss(model, PROMPTS, samples, r, r.clone(), kl_coef=0.1, pad_id=PAD)
    loss.backward()
    assert stats["advantage"] == 0.0
    assert all(g is not None and not g.any() for g in _grads(model))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_advantage_sign_moves_sample_logprob(sign: float) -> None:
    model = _lora(_base()).model
    model.train()
    prompts = PROMPTS[:1]
    sample = _gen(model, prompts, greedy=False, generator=torch.Generator().manual_seed(3))
    before = cet.sequence_logprobs(model, prompts, sample, PAD).item()
    r_sample = torch.tensor([0.5 + 0.5 * sign], requires_grad=True)
    r_greedy = torch.tensor([0.5], requires_grad=True)
    loss, _ = cet.scst_loss(model, prompts, sample, r_sample, r_greedy, kl_coef=0.0, pad_id=PAD)
    loss.backward()
    # The advantage is a constant: rewards never receive gradient.
    assert r_sample.grad is None and r_greedy.grad is None
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05).step()
    after = cet.sequence_logprobs(model, prompts, sample, PAD).item()
    assert (after - before) * sign > 1e-3


def test_kl_is_zero_after_attach_and_positive_after_training(trained: Any) -> None:
    fresh = _lora(_base()).model
    samples = _gen(fresh, PROMPTS, greedy=False, generator=torch.Generator().manual_seed(0))
    r = torch.zeros(len(PROMPTS))
    _, stats = cet.scst_loss(fresh, PROMPTS, samples, r, r, kl_coef=0.1, pad_id=PAD)
    assert stats["kl"] == 0.0  # LoRA B starts at zero: policy == base exactly

    samples = _gen(trained, PROMPTS, greedy=False, generator=torch.Generator().manual_seed(0))
    loss, stats = cet.scst_loss(trained, PROMPTS, samples, r, r, kl_coef=0.1, pad_id=PAD)
    assert stats["kl"] > 0.5
    assert loss.item() > 0  # zero advantage: what is left is the KL penalty
    trained.zero_grad()
    loss.backward()
    assert any(g is not None and g.any() for g in _grads(trained))
    trained.zero_grad()


# --------------------------------------------------------------------------- adapters
def test_adapter_save_load_round_trip(
    phase1: tuple[Path, list[float]], trained: Any, tmp_path: Path
) -> None:
    cet.save_adapter(trained, tmp_path / "adapter")
    trainable, total = cet.trainable_parameters(trained)
    assert trainable == _expected_lora_count(_base(), r=8)

    reloaded = cet.load_adapter(_pretrained(phase1), tmp_path / "adapter", trainable=True)
    assert cet.trainable_parameters(reloaded) == (trainable, total)
    ids = torch.tensor([PROMPTS[0]])
    trained.eval()
    reloaded.eval()
    with torch.no_grad():
        assert torch.equal(trained(input_ids=ids).logits, reloaded(input_ids=ids).logits)
    frozen = cet.load_adapter(_pretrained(phase1), tmp_path / "adapter", trainable=False)
    assert cet.trainable_parameters(frozen)[0] == 0


def _expected_lora_count(model: Any, r: int) -> int:
    # LoRA adds A (r x in) and B (out x r) to every targeted linear layer.
    return sum(
        r * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in TARGETS
    )


def test_trainable_share_at_the_pipeline_size_is_what_the_adapters_add() -> None:
    """The default params.yaml model and adapter: LoRA trains exactly r * (in + out) per
    targeted layer, a minority of the weights (14.5 % at the default size: small bases are
    dominated by attention and MLP matrices, all of which are targeted)."""
    from reprolab.core.config import load_params

    p = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    m, a = p.train.cet.model, p.train.cet.adapter
    base = cet.build_base_model(
        m, vocab_size=p.contexts.features.vocab_size, pad_id=PAD, bos_id=BOS, eos_id=EOS, seed=0
    )
    _, full = cet.trainable_parameters(base)
    expected = sum(
        a.r * (mod.in_features + mod.out_features)
        for name, mod in base.named_modules()
        if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in a.target_modules
    )
    model = cet.attach_adapters(base, method="lora", r=a.r, alpha=a.alpha, dropout=a.dropout,
                                target_modules=list(a.target_modules), seed=0).model  # fmt: skip
    trainable, total = cet.trainable_parameters(model)
    assert total == full + trainable
    assert trainable == expected
    assert 0.05 < trainable / total < 0.25


def test_missing_adapter_is_dependency_error(tmp_path: Path) -> None:
    with pytest.raises(DependencyError, match="adapter not found"):
        cet.load_adapter(_base(), tmp_path / "nope", trainable=False)


def test_unknown_target_module_is_validation_error() -> None:
    with pytest.raises(ValidationError, match="cannot attach LoRA"):
        cet.attach_adapters(_base(), method="lora", r=4, alpha=8, dropout=0.0,
                            target_modules=["no_such_proj"], seed=0)  # fmt: skip


@pytest.mark.skipif(not cet.bitsandbytes_available(), reason="bitsandbytes 4-bit unavailable")
def test_qlora_trains_on_a_4bit_base(phase1: tuple[Path, list[float]]) -> None:
    import bitsandbytes as bnb

    adapted = _lora(str(phase1[0]), method="qlora")
    assert adapted.method == "qlora"
    q_proj = adapted.model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit)
    # Logical weight counts: the same as LoRA on the float32 base.
    assert cet.trainable_parameters(adapted.model) == cet.trainable_parameters(_lora(_base()).model)
    losses = _sft(adapted.model, steps=12)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_qlora_falls_back_to_lora_without_bitsandbytes(
    phase1: tuple[Path, list[float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cet, "bitsandbytes_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="falling back from QLoRA to plain LoRA"):
        adapted = _lora(str(phase1[0]), method="qlora")
    assert adapted.method == "lora"
    q_proj = adapted.model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer) is torch.nn.Linear


def test_qlora_refuses_a_float_model_object() -> None:
    if not cet.bitsandbytes_available():
        pytest.skip("without bitsandbytes qlora falls back instead")
    with pytest.raises(ValidationError, match="4-bit base"):
        _lora(_base(), method="qlora")


# --------------------------------------------------------------------------- RNG state
def test_rng_state_round_trip() -> None:
    gen = torch.Generator().manual_seed(5)
    state = cet.rng_state(gen)

    def draw() -> tuple[Any, ...]:
        return (
            random.random(),
            np.random.random(),  # noqa: NPY002  (the legacy global state is what is captured)
            torch.rand(3).tolist(),
            torch.rand(2, generator=gen).tolist(),
        )

    first = draw()
    cet.set_rng_state(state, gen)
    assert draw() == first


def test_bitsandbytes_probe_never_raises() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(cet.bitsandbytes_available(), bool)


_SAVE_ADAPTER = """
import sys, torch
from transformers import LlamaConfig, AutoModelForCausalLM
from reprolab.models.cet import model as cet
cet.set_determinism(0, threads=1)
config = LlamaConfig(vocab_size=48, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
torch.manual_seed(0)
base = AutoModelForCausalLM.from_config(config)
adapted = cet.attach_adapters(base, method="lora", r=2, alpha=4.0, dropout=0.0,
                              target_modules=%r, seed=0)
cet.save_adapter(adapted.model, sys.argv[1])
"""


@pytest.mark.slow
def test_saved_adapter_bytes_do_not_depend_on_the_string_hash_seed(tmp_path: Path) -> None:
    """peft writes target_modules from a set: two processes with different PYTHONHASHSEED
    must still write byte-identical adapter files (what dvc.lock hashes)."""
    import os
    import subprocess
    import sys

    outs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"adapter-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-c", _SAVE_ADAPTER % (TARGETS,), str(out)], env=env, check=True
        )
        outs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outs[0] == outs[1] == outs[2]
    import json

    config = json.loads(outs[0]["adapter_config.json"])
    assert config["target_modules"] == sorted(TARGETS)
