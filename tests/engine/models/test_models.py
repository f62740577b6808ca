"""The price network: MLA against a by-hand computation, RoPE, MoE routing, presets, overfitting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.config import N_FEATURES, PRESETS, PriceModelConfig, override
from engine.data import build_windows, load_bars
from engine.models import MLA, MoE, Rotary, apply_rotary, build_price_model, meta_price_model
from engine.models.mla import rotary_dim


def small_cfg(**changes) -> PriceModelConfig:
    base = override(PriceModelConfig(), d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16,
                    qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=6, ffn_hidden=64,
                    dropout=0.0, window=24)
    return override(base, **changes)


def rope_by_hand(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate pairs (i, i + d/2) of x (B, T, H, d) as complex numbers by angle pos * theta^(-2i/d)."""
    d = x.shape[-1]
    pos = torch.arange(x.shape[1], dtype=torch.float64)
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.outer(pos, freqs)
    rot = torch.polar(torch.ones_like(angles), angles)[None, :, None]
    z = torch.complex(x[..., : d // 2].double(), x[..., d // 2:].double()) * rot
    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def mla_by_hand(attn: MLA, x: torch.Tensor, cfg: PriceModelConfig) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V written out, with one rotary key per position broadcast over heads."""
    b, t, _ = x.shape
    h, nope, rope, vd = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
    if cfg.q_lora_rank:
        q = rms(x @ attn.wq_a.weight.T, attn.q_norm.weight) @ attn.wq_b.weight.T
    else:
        q = x @ attn.wq.weight.T
    q = q.view(b, t, h, nope + rope)
    q = torch.cat([q[..., :nope], rope_by_hand(q[..., nope:], cfg.rope_theta)], -1)
    latent = x @ attn.wkv_a.weight.T
    c, k_pe = latent[..., : cfg.kv_lora_rank], latent[..., cfg.kv_lora_rank:]
    kv = (rms(c, attn.kv_norm.weight) @ attn.wkv_b.weight.T).view(b, t, h, nope + vd)
    k_pe = rope_by_hand(k_pe[:, :, None], cfg.rope_theta).expand(b, t, h, rope)
    k = torch.cat([kv[..., :nope], k_pe], -1)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(nope + rope)
    out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), kv[..., nope:])
    return out.reshape(b, t, h * vd) @ attn.wo.weight.T


@pytest.mark.parametrize("q_lora_rank,v_head_dim", [(0, 6), (12, 16)])
def test_mla_equals_explicit_attention_with_the_same_weights(q_lora_rank, v_head_dim):
    torch.manual_seed(0)
    cfg = small_cfg(q_lora_rank=q_lora_rank, v_head_dim=v_head_dim)
    attn = MLA(cfg)
    x = torch.randn(3, cfg.window, cfg.d_model)
    cos, sin = Rotary(rotary_dim(cfg), cfg.window, cfg.rope_theta)(cfg.window, x.dtype)
    torch.testing.assert_close(attn(x, cos, sin), mla_by_hand(attn, x, cfg), atol=2e-5, rtol=1e-4)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    dim, length = 16, 64
    cos, sin = Rotary(dim, length)(length, torch.float64)
    q, k = torch.randn(dim, dtype=torch.float64), torch.randn(dim, dtype=torch.float64)
    rotated_q = apply_rotary(q.expand(length, 1, dim), cos, sin)[:, 0]  # q placed at every position
    rotated_k = apply_rotary(k.expand(length, 1, dim), cos, sin)[:, 0]
    scores = rotated_q @ rotated_k.T  # scores[m, n] = q at m . k at n
    for shift in (1, 7, 30):
        torch.testing.assert_close(scores[shift:, shift:], scores[:-shift, :-shift], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(scores[0, 1], scores[0, 5])  # but it does see the distance


def test_moe_sends_each_token_to_exactly_two_experts_and_balance_loss_trains_the_gate():
    torch.manual_seed(0)
    moe = MoE(dim=16, hidden=24, n_experts=8, top_k=2)
    x = torch.randn(50, 16)
    weights, ids, aux = moe.route(x)
    assert ids.shape == (50, 2) and (ids[:, 0] != ids[:, 1]).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(50))
    out, aux = moe(x)
    expected = torch.stack([
        sum(w * moe.experts[int(e)](x[i:i + 1])[0] for w, e in zip(weights[i], ids[i])) for i in range(len(x))
    ])
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    assert aux.item() > 0
    aux.backward()
    assert moe.gate.weight.grad is not None and moe.gate.weight.grad.abs().sum() > 0


def test_moe_model_reports_weighted_aux_loss_and_dense_model_reports_zero():
    x = torch.randn(2, 24, N_FEATURES)
    assert build_price_model(small_cfg()).forward(x).aux_loss.item() == 0.0
    out = build_price_model(small_cfg(ffn="moe", n_experts=4)).forward(x)
    assert out.aux_loss.item() > 0 and out.aux_loss.requires_grad


@pytest.mark.parametrize("name,target", [("tiny", 2.5e6), ("small", 10e6), ("base", 40e6), ("large", 160e6)])
def test_preset_parameter_counts_match_their_names(name, target):
    n = meta_price_model(PRESETS[name]).num_parameters()
    assert abs(n / target - 1) <= 0.10, f"{name}: {n:,} parameters"


def test_meta_model_counts_exactly_and_refuses_a_bad_shape_without_memory():
    cfg = small_cfg()
    meta = meta_price_model(cfg)
    assert meta.num_parameters() == build_price_model(cfg).num_parameters()
    assert next(meta.parameters()).device.type == "meta"
    with pytest.raises(ValueError, match="ffn"):
        meta_price_model(small_cfg(ffn="relu"))


def test_memory_estimate_grows_with_batch_and_halves_activations_in_half_precision():
    model = meta_price_model(PRESETS["tiny"])
    states_gb = model.num_parameters() * 16 / 2**30  # weights, grads, two AdamW moments in fp32
    fp32, bf16 = model.training_memory_gb(64, "fp32"), model.training_memory_gb(64, "bf16")
    assert states_gb < bf16 < fp32 < model.training_memory_gb(128, "fp32")
    assert fp32 - states_gb == pytest.approx(2 * (bf16 - states_gb))


def test_presets_are_overridable_and_unknown_names_rejected():
    assert build_price_model("tiny", d_model=64, n_layers=1).cfg.d_model == 64
    assert PRESETS["tiny"].d_model == 256  # the preset itself is not mutated
    with pytest.raises(ValueError, match="huge"):
        build_price_model("huge")
    with pytest.raises(ValueError, match="widht"):
        build_price_model("tiny", widht=3)


@pytest.mark.parametrize("changes", [{"attention": "mha"}, {"ffn": "geglu"}, {"ffn": "moe", "n_experts": 4}])
def test_variants_share_the_interface(changes):
    model = build_price_model(small_cfg(**changes))
    out = model(torch.randn(2, 24, N_FEATURES), torch.ones(2, N_FEATURES))
    assert out.prices.shape == (2, 7) and out.features.shape == (2, 32)
    out.prices.sum().backward()


def test_missing_feature_mask_changes_the_input_embedding():
    torch.manual_seed(0)
    model = build_price_model(small_cfg())
    torch.nn.init.normal_(model.missing_embed)
    x = torch.randn(2, 24, N_FEATURES)
    mask = torch.ones(2, N_FEATURES)
    mask[:, 8:10] = 0
    assert not torch.allclose(model(x, mask).prices, model(x).prices)


def test_optimizer_groups_cover_every_parameter_once_and_spare_norms_biases_embeddings():
    model = build_price_model(small_cfg(q_lora_rank=8))
    decay, no_decay = model.optimizer_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    no_decay_ids = set(map(id, no_decay["params"]))
    for name, p in model.named_parameters():
        spare = "norm" in name or name.endswith("bias") or name == "missing_embed"
        assert (id(p) in no_decay_ids) == spare, name


def test_mla_runs_under_bf16_autocast_on_cpu():
    model = build_price_model(small_cfg())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 24, N_FEATURES), torch.ones(2, N_FEATURES))
    assert out.prices.dtype == torch.bfloat16 and torch.isfinite(out.prices.float()).all()
    out.prices.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_tiny_model_overfits_a_real_batch_and_trains_its_feature_head():
    torch.manual_seed(0)
    ws = build_windows(load_bars("sse"), window=60)
    ends = ws.ends[ws.has_targets(ws.ends)][-400::25]  # 16 real windows spread over ~1.5 years
    x = torch.from_numpy(ws.inputs(ends))
    y = torch.from_numpy(ws.targets(ends)).float()
    y = y / y.std()
    mask = torch.from_numpy(ws.mask).float().expand(len(ends), -1)
    model = build_price_model(small_cfg(d_model=48, n_layers=2, window=60))
    head_before = model.feature_head.weight.detach().clone()
    opt = torch.optim.AdamW(model.optimizer_groups(0.0), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = torch.nn.functional.mse_loss(model(x, mask).prices, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.1 * losses[0], losses[::15]
    assert not torch.allclose(model.feature_head.weight, head_before)
