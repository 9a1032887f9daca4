"""Typed schema for params.yaml, validated before any work: one module per section
(``markets``, ``options``, ``contexts``, ``train``, ``gates`` for ``validate``, ``params``
for the whole file), the validation engine (``engine``), strict reading (``files``) and the
check_params stage (``check``). The schema holds types, bounds and meanings; the values live
in params.yaml only.

Every key has a type and, where it matters, a range. Unknown keys (typos), wrong types and
out-of-range values raise :class:`ValidationError` with one line naming the key path, the
value and what was expected, e.g.::

    params.yaml: markets.generate.n_symbols = -3: expected an integer >= 1

A params file must be complete and unambiguous (:func:`load_params`): every section and key
written out, none null, no key twice, since DVC tracks only what the file says. Every size
has an upper bound, so a stray zero fails here instead of running for hours.
"""

from __future__ import annotations

from reprolab.core.config.check import CHECK_MARKER, CHECK_MARKER_TEXT, check_params
from reprolab.core.config.contexts import (
    ContextsAugmentParams,
    ContextsFeaturesParams,
    ContextsGenerateParams,
    ContextsParams,
    ContextsSplitParams,
)
from reprolab.core.config.engine import parse_params
from reprolab.core.config.fields import PARAMS_FILE
from reprolab.core.config.files import load_params, read_params_yaml, to_dict
from reprolab.core.config.gates import (
    BenchmarkGoals,
    CetGoals,
    DataGoals,
    MambaGoals,
    PinnGoals,
    ResourceGoals,
    ValidateParams,
)
from reprolab.core.config.markets import (
    MarketsAugmentParams,
    MarketsFeaturesParams,
    MarketsGenerateParams,
    MarketsParams,
    MarketsSplitParams,
    RegimeParams,
    SplitFractions,
)
from reprolab.core.config.options import (
    HeldoutRegion,
    OptionsDomain,
    OptionsFeaturesParams,
    OptionsGenerateParams,
    OptionsParams,
    OptionsSplitParams,
)
from reprolab.core.config.params import BenchmarkParams, Params, ResourcesParams
from reprolab.core.config.train import (
    CetAdapterParams,
    CetModelParams,
    CetPhaseParams,
    CetScstParams,
    CetTrainParams,
    GuardParams,
    HmmParams,
    MambaTrainParams,
    PinnLossWeights,
    PinnTrainParams,
    TrainParams,
    WalkForwardParams,
)

__all__ = [
    "CHECK_MARKER",
    "CHECK_MARKER_TEXT",
    "PARAMS_FILE",
    "BenchmarkGoals",
    "BenchmarkParams",
    "CetAdapterParams",
    "CetGoals",
    "CetModelParams",
    "CetPhaseParams",
    "CetScstParams",
    "CetTrainParams",
    "ContextsAugmentParams",
    "ContextsFeaturesParams",
    "ContextsGenerateParams",
    "ContextsParams",
    "ContextsSplitParams",
    "DataGoals",
    "GuardParams",
    "HeldoutRegion",
    "HmmParams",
    "MambaGoals",
    "MambaTrainParams",
    "MarketsAugmentParams",
    "MarketsFeaturesParams",
    "MarketsGenerateParams",
    "MarketsParams",
    "MarketsSplitParams",
    "OptionsDomain",
    "OptionsFeaturesParams",
    "OptionsGenerateParams",
    "OptionsParams",
    "OptionsSplitParams",
    "Params",
    "PinnGoals",
    "PinnLossWeights",
    "PinnTrainParams",
    "RegimeParams",
    "ResourceGoals",
    "ResourcesParams",
    "SplitFractions",
    "TrainParams",
    "ValidateParams",
    "WalkForwardParams",
    "check_params",
    "load_params",
    "parse_params",
    "read_params_yaml",
    "to_dict",
]
