"""Byte-level BPE tokenizer for the Context Engineering Transformer (CET).

A CET example is ``<s> prompt <ctx> target </s>``: the model reads the prompt up to the
separator and learns to write the target. The CET works line by line (``encode_lines``): the
prompt is one raw line with the task's own name replaced by ``<self>``, the target that line's
label (see :func:`reprolab.datasets.contexts.render.line_label`). Training is
deterministic (same texts -> the same
``tokenizer.json``, byte for byte), and byte-level BPE never meets an unknown character, so
``decode(encode(text)) == text`` for any text without special-token strings in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprolab.core.errors import DataQualityError, DependencyError, ValidationError

if TYPE_CHECKING:  # transformers is imported lazily: importing it costs seconds
    from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
SEP_TOKEN = "<ctx>"
SELF_TOKEN = "<self>"  # stands for the task's own name in a line prompt
# Order fixes the ids: pad=0, bos=1, eos=2, sep=3, self=4 in every tokenizer trained here.
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, SEP_TOKEN, SELF_TOKEN)

_BYTE_ALPHABET = 256


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``; returns a ``PreTrainedTokenizerFast``.

    ``vocab_size`` is an upper bound: a small corpus may run out of merges before reaching it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    minimum = _BYTE_ALPHABET + len(SPECIAL_TOKENS)
    if vocab_size <= minimum:
        raise ValidationError(f"vocab_size must exceed {minimum} (256 bytes + specials)")
    if min_frequency < 1:
        raise ValidationError("min_frequency must be >= 1")
    backend = Tokenizer(models.BPE())
    # add_prefix_space=False keeps decode(encode(text)) == text exactly.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        # The full byte alphabet, even for bytes the corpus lacks, so nothing is unknown later.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return _wrap(backend)


def _wrap(backend: Any) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        additional_special_tokens=[SEP_TOKEN, SELF_TOKEN],
        clean_up_tokenization_spaces=False,  # " ." -> "." would break the exact round trip
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> Path:
    """Write ``tokenizer.json`` + config into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def _looks_local(path_or_id: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else is meant as a filesystem path.
    return (
        Path(path_or_id).exists()
        or path_or_id.startswith((".", "/", "~"))
        or path_or_id.count("/") > 1
        or "\\" in path_or_id
    )


def load_tokenizer(path_or_id: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved by :func:`save_tokenizer` (or a hub id when online)."""
    from transformers import AutoTokenizer

    name = str(path_or_id)
    local = _looks_local(name)
    if local and not (Path(name).expanduser() / "tokenizer.json").is_file():
        raise DependencyError(
            f"tokenizer not found at {name}: run the tokenizer stage or point to a directory "
            "written by save_tokenizer (tokenizer.json)"
        )
    try:
        return AutoTokenizer.from_pretrained(
            str(Path(name).expanduser()) if local else name, local_files_only=local
        )
    except OSError as exc:
        raise DependencyError(
            f"tokenizer {name!r} could not be loaded (offline or not on the hub): pass a local "
            "directory written by save_tokenizer, or set HF_HUB_OFFLINE=0 with network access"
        ) from exc


def special_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    """The ids of pad/bos/eos/sep/self; raises if the tokenizer lacks one of them."""
    ids = {
        "pad": tokenizer.pad_token_id,
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "sep": tokenizer.convert_tokens_to_ids(SEP_TOKEN),
        "self": tokenizer.convert_tokens_to_ids(SELF_TOKEN),
    }
    if any(v is None or v == tokenizer.unk_token_id for v in ids.values()):
        raise ValidationError(f"tokenizer lacks special tokens {SPECIAL_TOKENS}: got {ids}")
    return ids


def _tokens(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    # split_special_tokens: a literal "<ctx>" inside raw text is data, not a control token.
    return list(tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))


def encode_pair(
    tokenizer: PreTrainedTokenizerFast,
    prompt: str,
    target: str | None,
    max_prompt_tokens: int,
    max_target_tokens: int,
) -> dict[str, list[int] | None]:
    """``prompt_ids`` = bos + prompt + sep; ``target_ids`` = target + eos (None without target).

    Limits count the special tokens too. Over-long text raises DataQualityError: silently
    truncating would teach the model to copy requirement lines it never saw in full.
    """
    prompt_tokens = _tokens(tokenizer, prompt)
    return _pair(tokenizer, prompt_tokens, target, max_prompt_tokens, max_target_tokens)


def _pair(
    tokenizer: PreTrainedTokenizerFast,
    prompt_tokens: list[int],
    target: str | None,
    max_prompt_tokens: int,
    max_target_tokens: int,
) -> dict[str, list[int] | None]:
    ids = special_ids(tokenizer)
    prompt_ids = [ids["bos"], *prompt_tokens, ids["sep"]]
    if len(prompt_ids) > max_prompt_tokens:
        raise DataQualityError(
            f"prompt has {len(prompt_ids)} tokens, over the limit max_prompt_tokens="
            f"{max_prompt_tokens}"
        )
    target_ids = None
    if target is not None:
        target_ids = [*_tokens(tokenizer, target), ids["eos"]]
        if len(target_ids) > max_target_tokens:
            raise DataQualityError(
                f"target has {len(target_ids)} tokens, over the limit max_target_tokens="
                f"{max_target_tokens}"
            )
    return {"prompt_ids": prompt_ids, "target_ids": target_ids}


def own_name(name: str) -> re.Pattern[str]:
    """The task's name as a whole identifier: ``tidy_rows`` in "(for tidy_rows)", never
    inside ``tidy_rows_2`` or ``my_tidy_rows``."""
    return re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])")


def line_prompt_tokens(tokenizer: PreTrainedTokenizerFast, name: str, line: str) -> list[int]:
    """What the CET reads for one raw line: the line's tokens, the task's own name (the raw
    context's header names it) replaced by the ``<self>`` token.

    The model then tells this task's lines from other programs' by whether another name
    appears, instead of comparing two spellings of a name token by token (byte-level BPE
    spells a name one way after a space and another after a bracket).
    """
    own = special_ids(tokenizer)["self"]
    out: list[int] = []
    for i, piece in enumerate(own_name(name).split(line)):
        if i:
            out.append(own)
        out.extend(_tokens(tokenizer, piece))
    return out


def encode_lines(
    tokenizer: PreTrainedTokenizerFast,
    raw: str,
    name: str,
    labels: Sequence[str] | None,
    max_prompt_tokens: int,
    max_target_tokens: int,
) -> dict[str, list[list[int]] | None]:
    """One (prompt, target) pair per line of ``raw``: the prompt :func:`line_prompt_tokens`
    between bos and sep, the target the line's label (as :func:`encode_pair`).

    ``labels`` must hold one label per line (``None``: prompts only).
    """
    lines = raw.split("\n")
    if labels is not None and len(labels) != len(lines):
        raise DataQualityError(
            f"context of {name!r} has {len(lines)} lines but {len(labels)} line labels"
        )
    pairs = [
        _pair(
            tokenizer,
            line_prompt_tokens(tokenizer, name, line),
            None if labels is None else labels[i],
            max_prompt_tokens,
            max_target_tokens,
        )
        for i, line in enumerate(lines)
    ]
    prompts = [list(p["prompt_ids"] or []) for p in pairs]
    if labels is None:
        return {"prompt_ids": prompts, "target_ids": None}
    return {"prompt_ids": prompts, "target_ids": [list(p["target_ids"] or []) for p in pairs]}
