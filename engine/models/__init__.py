"""Networks of both stages: the MLA price encoder and the recurrent strategy network."""

from engine.models.layers import GatedFFN, MoE, RMSNorm, Rotary, apply_rotary
from engine.models.mla import MHA, MLA, build_attention
from engine.models.price import (
    PriceNetwork,
    PriceOutput,
    build_price_model,
    meta_price_model,
    monotone_quantiles,
    output_quantiles,
)
from engine.models.strategy import StrategyNetwork, StrategyOutput

__all__ = [
    "MHA",
    "MLA",
    "GatedFFN",
    "MoE",
    "PriceNetwork",
    "PriceOutput",
    "RMSNorm",
    "Rotary",
    "StrategyNetwork",
    "StrategyOutput",
    "apply_rotary",
    "build_attention",
    "build_price_model",
    "meta_price_model",
    "monotone_quantiles",
    "output_quantiles",
]
