"""The price network: a pre-norm Transformer encoder over [B, window, 11] bars -> 7 scale-free closes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engine.config import PRESETS, PriceModelConfig, override
from engine.models.layers import GatedFFN, MoE, RMSNorm, Rotary
from engine.models.mla import build_attention, rotary_dim


@dataclass
class PriceOutput:
    prices: Tensor  # (B, horizon) scale-free targets
    features: Tensor  # (B, d_model): the trained representation the price head reads
    aux_loss: Tensor  # scalar: weighted MoE balance loss, add it to the training loss (0 without MoE)


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
        self.price_head = nn.Linear(cfg.d_model, cfg.horizon)
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
        prices = self.price_head(self.drop(features))
        return PriceOutput(prices=prices, features=features, aux_loss=self.cfg.moe_aux_weight * aux)

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
