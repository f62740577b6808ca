"""Attention for the price encoder: DeepSeek-V2 Multi-head Latent Attention and a plain MHA for A/B.

Both take (x, cos, sin) and return a tensor shaped like x. The encoder reads a window of past bars
only, so attention is bidirectional (no causal mask). Inside `attention_readout(model)` each layer
also writes its attention probabilities to a side list, for explanations; the output is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.config import PriceModelConfig
from engine.models.layers import RMSNorm, apply_rotary


class _ReadOut:
    """Mixin: when `readout` is a list, forward appends softmax(q k^T / sqrt(d)) (B, H, T, T) to it.

    Computed apart from the fused kernel (which never materialises it), so reading it changes no
    result and costs nothing when off.
    """

    readout: list[Tensor] | None = None

    def _read(self, q: Tensor, k: Tensor) -> None:
        if self.readout is not None:  # q, k: (B, T, H, D)
            scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) / q.shape[-1] ** 0.5
            self.readout.append(scores.softmax(dim=-1).detach())


class MLA(_ReadOut, nn.Module):
    """Multi-head Latent Attention.

    q = [q_nope, rope(q_pe)] per head, from x or from a low-rank query latent;
    k = [k_nope, rope(k_pe)] where k_nope and v are up-projected from a shared, RMS-normalised KV
    latent c_kv, and k_pe is a single rotary key computed from x and shared by all heads.
    """

    def __init__(self, cfg: PriceModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.nope_dim, self.rope_dim, self.v_dim = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        self.kv_rank = cfg.kv_lora_rank
        qk_dim = self.nope_dim + self.rope_dim
        self.q_rank = cfg.q_lora_rank
        if self.q_rank > 0:
            self.wq_a = nn.Linear(cfg.d_model, self.q_rank, bias=False)
            self.q_norm = RMSNorm(self.q_rank)
            self.wq_b = nn.Linear(self.q_rank, cfg.n_heads * qk_dim, bias=False)
        else:
            self.wq = nn.Linear(cfg.d_model, cfg.n_heads * qk_dim, bias=False)
        # One matmul gives the KV latent and the shared rotary key.
        self.wkv_a = nn.Linear(cfg.d_model, self.kv_rank + self.rope_dim, bias=False)
        self.kv_norm = RMSNorm(self.kv_rank)
        self.wkv_b = nn.Linear(self.kv_rank, cfg.n_heads * (self.nope_dim + self.v_dim), bias=False)
        self.wo = nn.Linear(cfg.n_heads * self.v_dim, cfg.d_model, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, t, _ = x.shape
        h = self.n_heads
        q = self.wq_b(self.q_norm(self.wq_a(x))) if self.q_rank > 0 else self.wq(x)
        q_nope, q_pe = q.view(b, t, h, -1).split([self.nope_dim, self.rope_dim], dim=-1)
        q = torch.cat([q_nope, apply_rotary(q_pe, cos, sin)], dim=-1)  # (B, T, H, nope+rope)
        c_kv, k_pe = self.wkv_a(x).split([self.kv_rank, self.rope_dim], dim=-1)
        k_pe = apply_rotary(k_pe.unsqueeze(2), cos, sin)  # (B, T, 1, rope): shared by the heads
        kv = self.wkv_b(self.kv_norm(c_kv)).view(b, t, h, -1)
        k_nope, v = kv.split([self.nope_dim, self.v_dim], dim=-1)
        k = torch.cat([k_nope, k_pe.expand(b, t, h, self.rope_dim)], dim=-1)
        self._read(q, k)
        pad = q.shape[-1] - self.v_dim
        if pad > 0:  # flash kernels need equal q/k/v widths; zero columns beat the unfused math path
            v = F.pad(v, (0, pad))
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.wo(out[..., : self.v_dim].transpose(1, 2).reshape(b, t, h * self.v_dim))


class MHA(_ReadOut, nn.Module):
    """Plain multi-head attention with rotary positions on the whole head (fused QKV projection)."""

    def __init__(self, cfg: PriceModelConfig) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} is not divisible by n_heads {cfg.n_heads}")
        self.n_heads = cfg.n_heads
        self.wqkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.wo = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.wqkv(x).view(b, t, 3, self.n_heads, -1).unbind(dim=2)  # (B, T, H, D) each
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        self._read(q, k)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.wo(out.transpose(1, 2).reshape(b, t, d))


@contextmanager
def attention_readout(model: nn.Module) -> Iterator[list[Tensor]]:
    """Within the block, every forward of `model` appends each attention layer's probabilities
    (B, H, T, T), in layer order, to the yielded list; the model's outputs are unchanged."""
    layers = [m for m in model.modules() if isinstance(m, _ReadOut)]
    maps: list[Tensor] = []
    for layer in layers:
        layer.readout = maps
    try:
        yield maps
    finally:
        for layer in layers:
            layer.readout = None


def rotary_dim(cfg: PriceModelConfig) -> int:
    """Width of the rotary tables the chosen attention needs."""
    return cfg.qk_rope_head_dim if cfg.attention == "mla" else cfg.d_model // cfg.n_heads


def build_attention(cfg: PriceModelConfig) -> nn.Module:
    kinds = {"mla": MLA, "mha": MHA}
    if cfg.attention not in kinds:
        raise ValueError(f"unknown attention {cfg.attention!r}; choose one of {sorted(kinds)}")
    return kinds[cfg.attention](cfg)
