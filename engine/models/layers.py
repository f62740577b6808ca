"""Building blocks of the price network: RMSNorm, rotary positions, gated feed-forwards and MoE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """Scale-only normalisation (no mean, no bias): cheaper than LayerNorm and what MLA expects."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight.to(x.dtype), self.eps)


class Rotary(nn.Module):
    """RoPE tables computed once for every position; layers share them instead of recomputing.

    Pairs are (i, i + dim/2) ("rotate half" layout), so rotation is two multiplies and an add.
    """

    def __init__(self, dim: int, max_len: int, theta: float = 10_000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"rotary dimension must be even, got {dim}")
        freqs = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float64), freqs)  # (L, dim/2)
        angles = torch.cat([angles, angles], dim=-1)
        # Not persistent: derived from the config, so checkpoints stay small and always consistent.
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, seq_len: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Tables for positions 0..seq_len-1, shaped (T, 1, dim) to broadcast over (B, T, H, dim)."""
        if seq_len > self.cos.shape[0]:
            raise ValueError(f"sequence of {seq_len} steps exceeds the rotary table ({self.cos.shape[0]})")
        return self.cos[:seq_len, None].to(dtype), self.sin[:seq_len, None].to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (..., T, H, dim) by position: x*cos + rotate_half(x)*sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class GatedFFN(nn.Module):
    """W2(act(W1 x) * W3 x): SwiGLU with SiLU, GeGLU with GELU. W1 and W3 are one fused matmul."""

    def __init__(self, dim: int, hidden: int, activation: str = "silu") -> None:
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.act = {"silu": F.silu, "gelu": F.gelu}[activation]

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(self.act(gate) * up)


class MoE(nn.Module):
    """Top-k mixture of SwiGLU experts routed by a linear gate, with a Switch-style balance loss.

    Dispatch gathers, per expert, the tokens routed to it (a loop over experts, never over tokens),
    and scatters the weighted outputs back with index_add_.
    """

    def __init__(self, dim: int, hidden: int, n_experts: int = 8, top_k: int = 2) -> None:
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Linear(dim, n_experts, bias=False)
        self.experts = nn.ModuleList(GatedFFN(dim, hidden) for _ in range(n_experts))

    def route(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (N, D) -> top-k weights (N, k), expert ids (N, k), balance loss (scalar)."""
        probs = self.gate(x).float().softmax(dim=-1)  # (N, E)
        weights, ids = probs.topk(self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        n_experts = probs.shape[-1]
        # f_e: share of routed slots per expert (no gradient); P_e: mean gate probability.
        load = torch.zeros(n_experts, device=x.device).index_add_(
            0, ids.flatten(), torch.ones(ids.numel(), device=x.device)
        ) / ids.numel()
        aux = n_experts * (load * probs.mean(dim=0)).sum()
        return weights, ids, aux

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        weights, ids, aux = self.route(x)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = (ids == e).nonzero(as_tuple=True)
            if token.numel():
                y = expert(x[token]) * weights[token, slot, None].to(x.dtype)
                out.index_add_(0, token, y.to(out.dtype))
        return out.reshape(shape), aux
