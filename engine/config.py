"""Dataclass configs shared by every floor; serialised as plain dicts/JSON, never pickled."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, TypeVar

WINDOW = 180  # days of history the price network reads
HORIZON = 7  # closes it predicts
SEQ_LEN = 20  # decision days the strategy network walks
N_FEATURES = 13  # of the default feature set (FEATURE_SET); an old run records its own n_features
N_POSITIONS = 11  # positions 0..10
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # TrainConfig.precision; the CLI and the wizard offer these

# Feature sets (engine/data/features.py computes them): "vol_scaled" is every new run's, the 11
# "classic" features of the original design stay for runs recorded with them.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "classic": ("open", "high", "low", "close", "change", "amplitude",
                "volume", "amount", "turnover", "trades", "time"),
    "vol_scaled": ("open", "high", "low", "close", "change", "amplitude",
                   "volume", "amount", "turnover", "trades", "day_sin", "day_cos", "vol_ratio"),
}
FEATURE_SET = "vol_scaled"
FEATURE_NAMES = FEATURE_SETS[FEATURE_SET]

# Price heads (PriceModelConfig.head); the CLI and the wizard offer these.
# quantile: QUANTILES of the vol-normalised h-day log return (pinball loss, non-crossing by construction);
# student_t: (mu, sigma, nu) of it (negative log-likelihood); point: one value per horizon (TrainConfig.loss).
HEADS = ("quantile", "student_t", "point")
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
# DataConfig.context: "none", the universe's equal-weight index, or a dataset name (an index the user picks)
CONTEXTS = ("none", "equal_weight")
CONTEXT_FEATURES = ("market_change", "market_path")  # the context index's vol-scaled return and its path
TARGETS = ("own", "excess")  # DataConfig.target
STRATEGY_INPUTS = ("distribution", "features")  # StrategyModelConfig.inputs
STRATEGY_LOSSES = ("utility", "excess")  # StrategyLossConfig.kind


@dataclass
class DataConfig:
    """Which bars become windows, and how they are split chronologically."""

    window: int = WINDOW
    horizon: int = HORIZON
    seq_len: int = SEQ_LEN
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    start: str | None = None  # YYYY-MM-DD, inclusive
    end: str | None = None
    adjust: bool = True  # scale OHLC by Adj Close / Close where a file has it
    # Calendar cut dates shared by every instrument of a run (engine.data.splits.CutDates), YYYY-MM-DD.
    # Given by the user or resolved from the fractions when a run starts, then recorded with it.
    train_end: str | None = None
    val_end: str | None = None
    test_start: str | None = None
    feature_set: str = FEATURE_SET  # one of FEATURE_SETS; a record without it is "classic"
    # Market context beside each instrument's own path (engine.data.context): one of CONTEXTS, or a dataset
    # (an index the user picks); any but "none" adds CONTEXT_FEATURES channels to the inputs.
    context: str = "none"
    target: str = "own"  # one of TARGETS: "excess" learns the h-day return minus the universe's mean

    LEGACY: ClassVar[dict[str, Any]] = {"feature_set": "classic"}


def n_features(data: DataConfig) -> int:
    """Input channels a price network reads for `data`: its feature set plus any market-context channels."""
    return len(FEATURE_SETS[data.feature_set]) + (len(CONTEXT_FEATURES) if data.context != "none" else 0)


@dataclass
class PriceModelConfig:
    """Shape of the price network (MLA Transformer encoder). Presets below; any field overridable."""

    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    attention: str = "mla"  # "mla" | "mha"
    q_lora_rank: int = 0  # 0: queries not compressed
    kv_lora_rank: int = 64
    qk_nope_head_dim: int = 32
    qk_rope_head_dim: int = 16
    v_head_dim: int = 32
    ffn: str = "swiglu"  # "swiglu" | "geglu" | "moe"
    ffn_hidden: int = 683
    n_experts: int = 8
    top_k: int = 2
    moe_aux_weight: float = 0.01
    dropout: float = 0.1
    rope_theta: float = 10_000.0
    window: int = WINDOW
    horizon: int = HORIZON
    n_features: int = N_FEATURES
    head: str = "quantile"  # one of HEADS; a record without it is "point"

    LEGACY: ClassVar[dict[str, Any]] = {"head": "point"}


@dataclass
class StrategyModelConfig:
    """Shape of the strategy network (recurrent cell + position head) and what it reads."""

    feature_dim: int = 256  # width of the per-day inputs (set from the data when a run starts)
    state_dim: int = 64
    cell: str = "gru"  # "gru" | "lstm"
    head: str = "gumbel"  # "gumbel" | "straight_through" | "concrete"
    hard: bool = True  # Gumbel straight-through (one-hot forward, soft backward)
    tau_start: float = 2.0
    tau_floor: float = 0.3
    tau_anneal: float = 0.7  # fraction of the optimiser steps at which tau decays exponentially to tau_floor
    dropout: float = 0.1
    # one of STRATEGY_INPUTS: "distribution" reads per horizon the predicted median, spreads and tails in
    # log-return units plus sigma (a quantile-head price run); "features" the price network's d_model vector
    inputs: str = "distribution"
    regime_input: bool = True  # append the one-hot causal regime (engine.regime.causal_labels) to the inputs
    warm_start: bool = True  # a walk starts from the position the network picks the day before, not flat

    LEGACY: ClassVar[dict[str, Any]] = {"inputs": "features", "regime_input": False, "warm_start": False}


@dataclass
class StrategyLossConfig:
    """The strategy objective (engine.losses: utility_loss, strategy_loss): kind "utility" is mean-variance utility
    per day, w r - risk_aversion / 2 w^2 sigma^2 - cost |dw|; kind "excess" the log growth over a regime
    benchmark with the risk and opportunity weights below."""

    kind: str = "utility"  # one of STRATEGY_LOSSES
    # lambda of the utility on daily returns: the unconstrained optimum is w* = mu / (lambda sigma^2), so 3 holds
    # a market of Sharpe 0.5 at 16 % annual volatility (mu/sigma^2 = 3.1) fully and halves it at 23 %
    risk_aversion: float = 3.0
    # lambda multipliers by the causal regime of the day (1: the regime does not change the risk aversion)
    bull_risk_scale: float = 1.0
    bear_risk_scale: float = 1.0
    sideways_risk_scale: float = 1.0
    return_weight: float = 1.0
    risk_weight: float = 0.1
    opportunity_weight: float = 0.05
    information_ratio_weight: float = 0.0  # > 0 adds the IR form
    volatility_weight: float = 1.0  # inside the risk cost
    drawdown_weight: float = 1.0
    churn_weight: float = 0.1
    cost_bps: float = 10.0  # per unit of turnover (position 0 -> 10 = 1 unit)
    bear_position: float = 2.0  # conservative benchmark position in bear regimes
    momentum_lookback: int = 5

    LEGACY: ClassVar[dict[str, Any]] = {"kind": "excess"}


@dataclass
class TrainConfig:
    """How a model is optimised; shared by both stages."""

    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 64  # GLOBAL batch: under torchrun each of N processes takes 1/N of it
    grad_accum: int = 1
    lr: float = 2e-4
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 1.0
    precision: str = "auto"  # one of PRECISIONS
    compile: bool = False
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    seed: int = 0
    patience: int = 5  # evaluations without validation improvement before early stop
    eval_every: int | None = None  # steps; None: once per epoch
    log_every: int = 1
    loss: str = "huber"  # "mse" | "mae" | "huber" (price stage)
    num_threads: int | None = None


FILLS = ["next-open", "close"]  # when a decision taken at a close trades (BacktestConfig.fill)


@dataclass
class BacktestConfig:
    """Accounting rules of a backtest (engine/backtest/run.py documents the arithmetic)."""

    fill: str = "next-open"  # one of FILLS; data without opens fill at the close (and say so)
    cost_bps: float = 10.0  # commission and fees per unit of turnover, buys and sells
    slippage_bps: float = 0.0  # per unit of turnover, buys and sells
    stamp_duty_bps: float = 0.0  # per unit sold only (A-shares: 5 since 2023-08-28, 10 before)
    ashare_rules: bool = False  # no buy at a limit-up fill, no sell at a limit-down fill, T+1
    limit_pct: float | None = None  # None: the board's limit from the instrument's code
    start: str | None = None
    end: str | None = None
    risk_free: float = 0.0  # annual
    sma_fast: int = 20
    sma_slow: int = 60
    risk_aversion: float = 2.0  # the analytic baseline's lambda in clip(median / (lambda sigma^2), 0, 1)


def _preset(**overrides: Any) -> PriceModelConfig:
    return replace(PriceModelConfig(), **overrides)


# Sized so num_parameters() lands within 10 % of 2.5M / 10M / 40M / 160M (tests/test_models.py checks).
PRESETS: dict[str, PriceModelConfig] = {
    "tiny": _preset(d_model=256, n_layers=4, n_heads=4, kv_lora_rank=64, qk_nope_head_dim=32,
                    qk_rope_head_dim=16, v_head_dim=32, ffn_hidden=640),
    "small": _preset(d_model=384, n_layers=6, n_heads=6, kv_lora_rank=128, qk_nope_head_dim=48,
                     qk_rope_head_dim=16, v_head_dim=48, ffn_hidden=1088),
    "base": _preset(d_model=512, n_layers=13, n_heads=8, kv_lora_rank=128, qk_nope_head_dim=64,
                    qk_rope_head_dim=32, v_head_dim=64, ffn_hidden=1408),
    "large": _preset(d_model=1024, n_layers=14, n_heads=16, q_lora_rank=384, kv_lora_rank=256,
                     qk_nope_head_dim=64, qk_rope_head_dim=32, v_head_dim=64, ffn_hidden=2752),
}

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
    """Build a config from a dict, ignoring unknown keys so old run records still load; a field a
    (non-empty) record predates takes the class's LEGACY value, the behaviour it was recorded with."""
    data = data or {}
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    legacy = getattr(cls, "LEGACY", {}) if data else {}
    return cls(**{**legacy, **{k: v for k, v in data.items() if k in names}})


def override(cfg: T, **changes: Any) -> T:
    """Copy of cfg with changes; unknown field names are a ValueError naming the field."""
    names = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"unknown {type(cfg).__name__} field(s): {', '.join(unknown)}")
    return replace(cfg, **changes)  # type: ignore[type-var]


__all__ = [
    "CONTEXTS",
    "CONTEXT_FEATURES",
    "FEATURE_NAMES",
    "FEATURE_SET",
    "FEATURE_SETS",
    "FILLS",
    "HEADS",
    "HORIZON",
    "N_FEATURES",
    "N_POSITIONS",
    "PRECISIONS",
    "PRESETS",
    "QUANTILES",
    "SEQ_LEN",
    "STRATEGY_INPUTS",
    "STRATEGY_LOSSES",
    "TARGETS",
    "WINDOW",
    "BacktestConfig",
    "DataConfig",
    "PriceModelConfig",
    "StrategyLossConfig",
    "StrategyModelConfig",
    "TrainConfig",
    "field",
    "from_dict",
    "n_features",
    "override",
    "to_dict",
]
