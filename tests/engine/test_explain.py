"""Explanations of one day: MLA's attention read out without changing the forward pass and equal to
softmax(QK^T/sqrt(d)) recomputed by hand, integrated gradients that meet completeness on the tiny
model and find a planted driver, the strategy logit along a held walk, and the regime vote in detail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.config import DataConfig, StrategyModelConfig
from engine.data import build_windows, load_bars
from engine.explain import (
    COMPLETENESS,
    attention_rollout,
    explain_day,
    explain_regime,
    flat_baseline,
    input_names,
    inputs_only,
    integrated_gradients,
)
from engine.forecast import LoadedPriceModel
from engine.models import StrategyNetwork, apply_rotary, build_price_model
from engine.models.mla import attention_readout
from engine.policy import LoadedStrategy, day_features
from engine.regime import causal_labels, regime_names

SMALL = {"d_model": 32, "n_layers": 2, "n_heads": 2, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
         "qk_rope_head_dim": 8, "v_head_dim": 8, "ffn_hidden": 64}


@pytest.fixture(scope="module")
def ws():
    return build_windows(load_bars("spx"))


def loaded_price(preset: str = "tiny", **overrides) -> LoadedPriceModel:
    torch.manual_seed(3)
    model = build_price_model(preset, **overrides).eval()
    scale = np.full(model.cfg.horizon, 0.02)
    return LoadedPriceModel(model, model.cfg, DataConfig(), scale, "0" * 64, Path("none.pt"), {},
                            torch.device("cpu"))


def window(ws, day: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(ws.inputs(np.array([day])))
    return x, torch.from_numpy(np.asarray(ws.mask, dtype=np.float32))[None]


def by_hand(mla, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) from the module's own projections, head by head: q = [q_nope, rope(q_pe)],
    k = [W_uk norm(c_kv), rope(k_pe)] with k_pe the one decoupled rotary key all heads share."""
    h, nope, rope = mla.n_heads, mla.nope_dim, mla.rope_dim
    q = mla.wq(x)[0].view(x.shape[1], h, nope + rope)
    latent = mla.wkv_a(x)[0]
    c_kv, k_pe = latent[:, :mla.kv_rank], latent[:, mla.kv_rank:]
    k_pe = apply_rotary(k_pe[:, None], cos, sin)[:, 0]  # (T, rope): one key for every head
    kv = mla.wkv_b(mla.kv_norm(c_kv)).view(x.shape[1], h, nope + mla.v_dim)
    maps = []
    for head in range(h):
        q_h = torch.cat([q[:, head, :nope], apply_rotary(q[:, head:head + 1, nope:], cos, sin)[:, 0]], -1)
        k_h = torch.cat([kv[:, head, :nope], k_pe], -1)
        maps.append(torch.softmax(q_h @ k_h.T / (nope + rope) ** 0.5, dim=-1))
    return torch.stack(maps)  # (H, T, T)


def test_attention_readout_changes_no_output_and_rows_sum_to_one(ws):
    model = loaded_price("tiny", **SMALL).model
    x, mask = window(ws, 3000)
    plain = model(x, mask)
    with torch.no_grad(), attention_readout(model) as maps:
        read = model(x, mask)
    assert torch.equal(plain.prices, read.prices) and torch.equal(plain.features, read.features)
    assert len(maps) == SMALL["n_layers"] and maps[0].shape == (1, SMALL["n_heads"], 180, 180)
    for layer in maps:
        torch.testing.assert_close(layer.sum(-1), torch.ones(1, SMALL["n_heads"], 180))
    assert all(block.attn.readout is None for block in model.blocks)  # off again outside the block


def test_attention_matches_softmax_recomputed_from_the_projections(ws):
    model = loaded_price("tiny", **SMALL).model
    x, mask = window(ws, 4000)
    inputs = []
    hooks = [b.attn.register_forward_hook(lambda m, args, out: inputs.append(args)) for b in model.blocks]
    with torch.no_grad(), attention_readout(model) as maps:
        model(x, mask)
    for hook in hooks:
        hook.remove()
    for block, (h, cos, sin), read in zip(model.blocks, inputs, maps):
        with torch.no_grad():
            torch.testing.assert_close(read[0], by_hand(block.attn, h, cos, sin), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(maps[0][0, 0, -1], torch.full((180,), 1 / 180))  # not a uniform trivial map


def test_rollout_chains_residual_attention_and_sums_to_one():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 6, 6))
    maps /= maps.sum(-1, keepdims=True)
    row = attention_rollout(maps)
    assert row.sum() == pytest.approx(1.0)
    one = attention_rollout(maps[:1])
    np.testing.assert_allclose(one, 0.5 * maps[0, -1] + 0.5 * np.eye(6)[-1])
    eye = np.eye(6)
    expected = eye[-1] @ (0.5 * maps[2] + 0.5 * eye) @ (0.5 * maps[1] + 0.5 * eye) @ (0.5 * maps[0] + 0.5 * eye)
    np.testing.assert_allclose(row, expected)


def test_integrated_gradients_meet_completeness_on_the_tiny_model(ws):
    price = loaded_price("tiny")
    x, mask = window(ws, 4200)
    baseline = flat_baseline(x[0], input_names(x.shape[-1]))
    values, out, base, nodes, gap = integrated_gradients(
        lambda z: price.model(z, mask.expand(len(z), -1)).prices[:, 6], x[0], baseline)
    assert values.shape == (180, x.shape[-1])
    assert abs(out - base) > 1e-4  # a change to explain
    assert abs(values.double().sum().item() - (out - base)) <= COMPLETENESS * abs(out - base)
    assert gap <= COMPLETENESS and nodes >= 16


def test_inputs_only_changes_no_attribution_and_leaves_the_weights_trainable(ws):
    price = loaded_price("tiny", **SMALL)
    x, mask = window(ws, 4200)
    baseline = flat_baseline(x[0], input_names(x.shape[-1]))

    def median(z):
        return price.model(z, mask.expand(len(z), -1)).prices[:, 6]

    plain = integrated_gradients(median, x[0], baseline)[0]
    with inputs_only(price.model):
        assert not any(p.requires_grad for p in price.model.parameters())
        frozen = integrated_gradients(median, x[0], baseline)[0]
    torch.testing.assert_close(frozen, plain)
    assert all(p.requires_grad for p in price.model.parameters())


def test_a_planted_input_that_alone_drives_a_toy_model_gets_the_largest_attribution():
    torch.manual_seed(1)
    x = torch.randn(40, 5)
    x[23, 2] = 2.0
    weights = torch.randn(40, 5) * 0.01  # every other input moves the output a little

    def toy(z):  # (n, 40, 5) -> (n,)
        return F.softplus(3 * z[:, 23, 2]) + (z * weights).sum((1, 2))

    values, out, base, _, gap = integrated_gradients(toy, x, torch.zeros_like(x))
    assert np.unravel_index(values.abs().argmax().item(), values.shape) == (23, 2)
    assert gap <= COMPLETENESS
    assert values[23, 2] > 0.9 * (out - base)


def test_the_strategy_logit_along_the_held_walk_is_the_deterministic_one():
    torch.manual_seed(2)
    net = StrategyNetwork(StrategyModelConfig(feature_dim=12, state_dim=16)).eval()
    features = torch.randn(3, 20, 12) * 2
    free = net(features, deterministic=True)
    held = net(features, deterministic=True, held=free.logits.argmax(-1).float())
    torch.testing.assert_close(free.logits, held.logits)


def test_explain_day_of_a_strategy_run_attributes_both_outputs(ws):
    price = loaded_price("tiny", **SMALL)
    raw = day_features(price, ws, None, "", np.arange(3000, 3300))[3000:3300]
    torch.manual_seed(4)
    net = StrategyNetwork(StrategyModelConfig(feature_dim=raw.shape[1], state_dim=16)).eval()
    strategy = LoadedStrategy(net, net.cfg, DataConfig(), price, raw.mean(0), raw.std(0) + 1e-6, "1" * 64,
                              Path("none.pt"))
    out = explain_day(strategy, "spx", "2012-06-15", horizon=3)
    assert out.asof == "2012-06-15" and out.kind == "strategy" and out.horizon == 3
    assert out.attention.shape == (2, 2, 180) and out.dates[-1] == out.asof
    np.testing.assert_allclose(out.attention.sum(-1), 1.0, rtol=1e-6)
    assert out.strategy.values.shape == (20, raw.shape[1]) and out.strategy.dates[-1] == out.asof
    assert 0 <= out.position <= 10
    for attr in (out.forecast, out.strategy):
        assert attr.completeness_gap <= COMPLETENESS
        assert attr.values.sum() == pytest.approx(attr.output - attr.baseline_output, rel=COMPLETENESS)
    doc = out.to_json()
    assert {"asof", "attention", "attribution", "output", "baseline_output", "regime", "top"} <= set(doc)
    assert len(doc["attention"]) == 2 and len(doc["attention"][0]) == 180
    assert len(doc["attribution"]["values"]) == 180
    assert len(doc["attribution"]["values"][0]) == len(doc["attribution"]["features"])
    assert doc["top"] and all(("pushed" in t) for t in doc["top"])


def test_the_regime_explained_is_the_causal_label_with_each_voters_rule(ws):
    labels = regime_names(causal_labels(ws.close))
    for day in (400, 2500, 5000):
        found = explain_regime(ws.close[:day + 1])
        assert found["label"] == labels[day]
        for row in found["voters"]:
            expected = "bull" if row["statistic"] > row["high"] else "bear" if row["statistic"] < row["low"] else (
                "sideways")
            assert row["vote"] == expected
    assert explain_regime(ws.close[:15]) is None


def test_a_day_without_enough_history_is_refused(ws):
    with pytest.raises(ValueError, match="first day with enough history"):
        explain_day(loaded_price("tiny", **SMALL), "spx", "1999-03-01", horizon=7)
