"""The price network: a pre-norm Transformer encoder over [B, window, n_features] bars -> per horizon
the quantiles, Student-t parameters or a point value of the scale-free h-day log return."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor, nn

from engine.config import HEADS, PRESETS, QUANTILES, PriceModelConfig, override
from engine.models.layers import GatedFFN, MoE, RMSNorm, Rotary
from engine.models.mla import build_attention, rotary_dim

T_SCALE_MIN = 1e-3  # Student-t scale floor (network units)
T_DF_MIN = 2.0  # Student-t degrees of freedom above 2: a finite variance


@dataclass
class PriceOutput:
    prices: Tensor  # (B, horizon) scale-free targets: the median (quantile, student_t) or the point value
    features: Tensor  # (B, d_model): the trained representation the price head reads
    aux_loss: Tensor  # scalar: weighted MoE balance loss, add it to the training loss (0 without MoE)
    quantiles: Tensor | None = None  # (B, horizon, len(QUANTILES)) non-crossing, quantile head only
    t_params: Tensor | None = None  # (B, horizon, 3) location, scale, degrees of freedom; student_t only


def head_width(head: str) -> int:
    """Outputs per horizon of each head."""
    widths = {"quantile": len(QUANTILES), "student_t": 3, "point": 1}
    if head not in widths:
        raise ValueError(f"unknown price head {head!r}; choose one of {list(HEADS)}")
    return widths[head]


def monotone_quantiles(raw: Tensor, median_index: int) -> Tensor:
    """(..., Q) raw outputs -> increasing quantiles: raw[median] plus cumulative softplus steps up and
    down, so no two levels can cross whatever the weights (a sort would break the gradient's meaning)."""
    median = raw[..., median_index:median_index + 1]
    up = F.softplus(raw[..., median_index + 1:]).cumsum(dim=-1)
    down = F.softplus(raw[..., :median_index].flip(-1)).cumsum(dim=-1).flip(-1)
    return torch.cat([median - down, median, median + up], dim=-1)


def t_parameters(raw: Tensor) -> Tensor:
    """(..., 3) raw outputs -> location, scale > T_SCALE_MIN, degrees of freedom > T_DF_MIN."""
    return torch.stack([raw[..., 0], F.softplus(raw[..., 1]) + T_SCALE_MIN,
                        F.softplus(raw[..., 2]) + T_DF_MIN], dim=-1)


def output_quantiles(out: PriceOutput, levels: tuple[float, ...] = QUANTILES) -> np.ndarray:
    """(B, horizon, len(levels)) float64 quantiles in network units: the quantile head's own (levels
    must be QUANTILES), the Student-t's inverse CDF at `levels`, NaN for a point head (it has none)."""
    if out.quantiles is not None:
        if tuple(levels) != QUANTILES:
            raise ValueError(f"the quantile head predicts the levels {QUANTILES}, not {tuple(levels)}")
        return out.quantiles.detach().double().cpu().numpy()
    if out.t_params is not None:
        p = out.t_params.detach().double().cpu().numpy()[..., None, :]
        return stats.t.ppf(np.asarray(levels), p[..., 2], loc=p[..., 0], scale=p[..., 1])
    return np.full((*out.prices.shape, len(levels)), np.nan)


def build_ffn(cfg: PriceModelConfig) -> nn.Module:
    if cfg.ffn == "swiglu":
        return GatedFFN(cfg.d_model, cfg.ffn_hidden, "silu")
    if cfg.ffn == "geglu":
        return GatedFFN(cfg.d_model, cfg.ffn_hidden, "gelu")
    if cfg.ffn == "moe":
        return MoE(cfg.d_model, cfg.ffn_hidden, cfg.n_experts, cfg.top_k)
    raise ValueError(f"unknown ffn {cfg.ffn!r}; choose one of ['geglu', 'moe', 'swiglu']")


class Block(nn.Module):
    """x + attn(norm(x)), then x + ffn(norm(x)); returns the MoE balance loss alongside."""

    def __init__(self, cfg: PriceModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model)
        self.attn = build_attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model)
        self.ffn = build_ffn(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor | None]:
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin))
        y = self.ffn(self.ffn_norm(x))
        y, aux = y if isinstance(y, tuple) else (y, None)
        return x + self.drop(y), aux


class PriceNetwork(nn.Module):
    """Encoder + pooled feature head + price head.

    features = tanh(W pooled) is what the price head reads, so the vector handed to the strategy
    network is trained by the price loss (never a random projection).
    """

    def __init__(self, cfg: PriceModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.n_features, cfg.d_model)
        # Added per missing feature so the encoder can tell "absent" from "zero".
        self.missing_embed = nn.Parameter(torch.zeros(cfg.n_features, cfg.d_model))
        self.rotary = Rotary(rotary_dim(cfg), cfg.window, cfg.rope_theta)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model)
        self.feature_head = nn.Linear(cfg.d_model, cfg.d_model)
        self.price_head = nn.Linear(cfg.d_model, cfg.horizon * head_width(cfg.head))
        self.drop = nn.Dropout(cfg.dropout)
        self.apply(_init_weights)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> PriceOutput:
        h = self.embed(x)  # (B, T, D)
        if mask is not None:
            h = h + ((1 - mask.to(h.dtype)) @ self.missing_embed.to(h.dtype))[:, None]
        h = self.drop(h)
        cos, sin = self.rotary(x.shape[1], h.dtype)
        aux = h.new_zeros((), dtype=torch.float32)
        for block in self.blocks:
            h, block_aux = block(h, cos, sin)
            if block_aux is not None:
                aux = aux + block_aux
        h = self.norm(h)
        pooled = h[:, -1] + h.mean(dim=1)  # today's bar plus the window as a whole
        features = torch.tanh(self.feature_head(pooled))
        raw = self.price_head(self.drop(features)).unflatten(-1, (self.cfg.horizon, -1))  # (B, H, width)
        out = PriceOutput(prices=raw[..., 0], features=features, aux_loss=self.cfg.moe_aux_weight * aux)
        if self.cfg.head == "quantile":
            out.quantiles = monotone_quantiles(raw, QUANTILES.index(0.5))
            out.prices = out.quantiles[..., QUANTILES.index(0.5)]
        elif self.cfg.head == "student_t":
            out.t_params = t_parameters(raw)
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def training_memory_gb(self, batch: int, precision: str) -> float:
        """Rough training footprint at `batch` windows: fp32 weights, grads and AdamW moments
        (16 bytes a parameter), plus per-layer activations and attention scores."""
        cfg = self.cfg
        act_bytes = 2 if precision in ("bf16", "fp16") else 4
        states = self.num_parameters() * 16
        activations = batch * cfg.window * cfg.d_model * cfg.n_layers * act_bytes * 16
        attention = batch * cfg.n_heads * cfg.window ** 2 * cfg.n_layers * act_bytes * 2
        return (states + activations + attention) / 2**30

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay matrices; never norms, biases or the missing-feature embedding."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.dim() >= 2 and name != "missing_embed" else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def meta_price_model(cfg: PriceModelConfig) -> PriceNetwork:
    """The network of cfg on the meta device: exact sizes, and a bad value raises, without memory or time."""
    with torch.device("meta"):
        return PriceNetwork(cfg)


def build_price_model(preset: str | PriceModelConfig, **overrides) -> PriceNetwork:
    """A preset name ("tiny", "small", "base", "large") or a config, with any field overridden."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    return PriceNetwork(override(preset, **overrides))
