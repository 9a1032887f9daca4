"""CET tokenizer: deterministic byte-level BPE, exact round trips, special-token layout,
save/load, and loud failures for over-long text and missing files."""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reprolab.core.errors import DataQualityError, DependencyError, ValidationError
from reprolab.datasets.contexts.features import (
    SPECIAL_TOKENS,
    encode_lines,
    encode_pair,
    line_prompt_tokens,
    load_tokenizer,
    save_tokenizer,
    special_ids,
    train_tokenizer,
)


def _corpus(seed: int = 0, lines: int = 200) -> list[str]:
    """Requirement-like lines over a small vocabulary, so merges have real ties to break."""
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklm") for _ in range(rng.randint(2, 7))) for _ in range(80)
    ]
    seps = [" ", " ", " ", ", ", "; ", "\n", " == ", ">="]
    return ["".join(rng.choice(words) + rng.choice(seps) for _ in range(20)) for _ in range(lines)]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return train_tokenizer(_corpus(), vocab_size=600)


def _ids(tok: Any, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False, split_special_tokens=True)


def test_training_is_deterministic() -> None:
    a = train_tokenizer(_corpus(), vocab_size=600).backend_tokenizer.to_str()
    b = train_tokenizer(_corpus(), vocab_size=600).backend_tokenizer.to_str()
    assert a == b
    # ...and the corpus matters: a different one must give a different tokenizer.
    assert train_tokenizer(_corpus(seed=1), vocab_size=600).backend_tokenizer.to_str() != a


def test_vocab_size_is_an_upper_bound_and_merges_happen(tokenizer: Any) -> None:
    assert 256 + len(SPECIAL_TOKENS) < len(tokenizer) <= 600
    # A frequent corpus word becomes fewer tokens than its bytes.
    word = _corpus()[0].split()[0].strip(",;")
    assert len(_ids(tokenizer, word)) < len(word)


def test_special_tokens_have_fixed_ids(tokenizer: Any) -> None:
    assert special_ids(tokenizer) == {"pad": 0, "bos": 1, "eos": 2, "sep": 3, "self": 4}
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == SPECIAL_TOKENS[:3]
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3, 4]) == list(SPECIAL_TOKENS)


def test_rejects_impossible_vocab_size() -> None:
    with pytest.raises(ValidationError, match="vocab_size"):
        train_tokenizer(["abc"], vocab_size=100)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=string.printable, max_size=200))
def test_round_trip_any_ascii_text(tokenizer: Any, text: str) -> None:
    ids = _ids(tokenizer, text)
    assert tokenizer.decode(ids) == text
    assert not set(ids) & set(range(len(SPECIAL_TOKENS)))  # text never yields control ids


def test_literal_special_token_text_is_data(tokenizer: Any) -> None:
    ids = encode_pair(tokenizer, "keep <ctx> and </s> literal", "x", 64, 64)["prompt_ids"]
    assert ids.count(3) == 1 and ids[-1] == 3  # only the separator we add
    assert 2 not in ids
    assert tokenizer.decode(ids[1:-1]) == "keep <ctx> and </s> literal"


def test_encode_pair_layout(tokenizer: Any) -> None:
    out = encode_pair(tokenizer, "raw context, messy", "req >= 1", 64, 64)
    assert out["prompt_ids"] == [1, *_ids(tokenizer, "raw context, messy"), 3]
    assert out["target_ids"] == [*_ids(tokenizer, "req >= 1"), 2]
    assert encode_pair(tokenizer, "raw", None, 64, 64)["target_ids"] is None


def test_over_long_input_raises_naming_length_and_limit(tokenizer: Any) -> None:
    prompt, target = "abc def ghi jkl", "mno pqr"
    n_prompt = len(_ids(tokenizer, prompt)) + 2
    n_target = len(_ids(tokenizer, target)) + 1
    # Exactly at the limits is fine (specials included in the count)...
    encode_pair(tokenizer, prompt, target, n_prompt, n_target)
    # ...one under is an error, never a silent truncation.
    with pytest.raises(DataQualityError) as exc:
        encode_pair(tokenizer, prompt, target, n_prompt - 1, n_target)
    assert f"prompt has {n_prompt} tokens" in str(exc.value)
    assert f"max_prompt_tokens={n_prompt - 1}" in str(exc.value)
    with pytest.raises(DataQualityError, match=f"target has {n_target} tokens.*={n_target - 1}"):
        encode_pair(tokenizer, prompt, target, n_prompt, n_target - 1)


def test_save_load_round_trip(tokenizer: Any, tmp_path: Path) -> None:
    save_tokenizer(tokenizer, tmp_path / "tok")
    loaded = load_tokenizer(str(tmp_path / "tok"))
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert special_ids(loaded) == special_ids(tokenizer)
    for text in [*_corpus(seed=3, lines=5), "unseen ÿ text\twith\nodd  spacing"]:
        assert encode_pair(loaded, text, text, 512, 512) == encode_pair(
            tokenizer, text, text, 512, 512
        )


@pytest.mark.parametrize("name", ["missing", "org/not-downloaded"])
def test_missing_tokenizer_is_one_line_dependency_error(tmp_path: Path, name: str) -> None:
    target = str(tmp_path / name) if name == "missing" else name
    with pytest.raises(DependencyError) as exc:
        load_tokenizer(target)
    message = str(exc.value)
    assert "\n" not in message
    assert target in message
    assert "save_tokenizer" in message  # says how to provide it


def test_encode_lines_gives_one_pair_per_raw_line(tokenizer: Any) -> None:
    raw = "task: tidy_rows\nstep 1: sort ascending\n[INFO] heartbeat ok"
    labels = ["", "1: sort ascending", ""]
    out = encode_lines(tokenizer, raw, "tidy_rows", labels, 64, 64)
    pairs = zip(out["prompt_ids"], out["target_ids"] or [], strict=True)
    ids = special_ids(tokenizer)
    for line, label, (p, t) in zip(raw.split("\n"), labels, pairs, strict=True):
        assert p == [ids["bos"], *line_prompt_tokens(tokenizer, "tidy_rows", line), ids["sep"]]
        assert t == encode_pair(tokenizer, "", label, 64, 64)["target_ids"]
    assert encode_lines(tokenizer, raw, "tidy_rows", None, 64, 64)["target_ids"] is None
    with pytest.raises(DataQualityError, match="'tidy_rows' has 3 lines but 2 line labels"):
        encode_lines(tokenizer, raw, "tidy_rows", labels[:2], 64, 64)


def test_line_prompts_replace_the_own_name_and_only_it(tokenizer: Any) -> None:
    own = special_ids(tokenizer)["self"]

    def prompt(line: str) -> list[int]:
        return line_prompt_tokens(tokenizer, "tidy_rows", line)

    assert prompt("task: tidy_rows") == [*_ids(tokenizer, "task: "), own]
    assert prompt("(tidy_rows) sort, for tidy_rows") == [
        *_ids(tokenizer, "("),
        own,
        *_ids(tokenizer, ") sort, for "),
        own,
    ]
    # another program's name stays text, even when it contains this one's
    for other in ("tidy_rows_2: sort", "my_tidy_rows: sort", "tidy_rowsx: sort"):
        assert prompt(other) == _ids(tokenizer, other)
    # "<self>" written in a raw line is data, never the control token
    assert own not in prompt("the <self> token")
