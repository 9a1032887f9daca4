"""The CET judged from what its stage saved: the base model and tokenizer
(``models/cet/base``) with the adapter (``models/cet/adapter``) loaded with
``from_pretrained``, its engineered contexts of the held-out test programs scored by the
reconstructor beside every baseline's, with the same scoring training reports."""

from __future__ import annotations

from typing import Any

from reprolab.core import paths
from reprolab.core.config import Params
from reprolab.core.seeding import int_seed


def load_cet(params: Params) -> tuple[Any, Any]:
    """The saved CET (adapter on its base, frozen, eval mode) and the tokenizer it was
    trained with: the features' (or ``train.cet.base_model``'s). Not the copy saved beside
    the base: ``AutoTokenizer`` there picks the base's model-type tokenizer, which splits
    digits apart and so encodes differently."""
    from reprolab.datasets.contexts.features import load_tokenizer
    from reprolab.datasets.contexts.read import TOKENIZER
    from reprolab.models.cet.model import load_adapter, load_base_model

    model_dir = paths.model_dir("cet")
    tokenizer = load_tokenizer(
        params.train.cet.base_model or str(paths.features("contexts") / TOKENIZER)
    )
    model = load_adapter(
        load_base_model(model_dir / "base"), model_dir / "adapter", trainable=False
    )
    model.eval()
    return model, tokenizer


def split_data(params: Params, tokenizer: Any, split: str = "test") -> Any:
    """A split as the CET reads it: the features' prompts, or for a named base model the
    programs encoded again with that model's tokenizer (as training does)."""
    from reprolab.datasets.contexts.features import encode_lines
    from reprolab.datasets.contexts.read import read_features
    from reprolab.models.cet.data import Data

    f = params.contexts.features
    if not params.train.cet.base_model:
        return Data(read_features(split), None)

    def encode(raw: str, name: str, labels: list[str]) -> dict[str, Any]:
        return encode_lines(tokenizer, raw, name, labels, f.max_prompt_tokens, f.max_target_tokens)

    return Data(read_features(split), encode)


def cet_judgement(params: Params) -> dict[str, Any]:
    """Pass rate, compression, margin over the keyword heuristic and the gold contexts'
    pass rate on the test programs, from the saved model; every baseline reported."""
    from reprolab.datasets.contexts.features import special_ids
    from reprolab.datasets.contexts.reconstruct import Reconstructor
    from reprolab.models.cet.evaluate import Decoder, evaluate_contexts
    from reprolab.models.cet.model import set_determinism

    t = params.train.cet
    set_determinism(int_seed(params.seed, "validate", "cet"), t.threads)
    model, tokenizer = load_cet(params)
    decoder = Decoder(model, tokenizer, special_ids(tokenizer), t)
    with Reconstructor(workers=t.reconstruct_workers) as rec:
        scores = evaluate_contexts(decoder, rec, split_data(params, tokenizer))
    cet = scores["cet"]
    figures = {
        "pass_rate": cet["pass_rate"],
        "compression": cet["compression"],
        "margin_over_heuristic": round(cet["pass_rate"] - scores["heuristic"]["pass_rate"], 4),
        "gold_pass_rate": scores["gold"]["pass_rate"],
    }
    return {"test": scores, "figures": figures}
