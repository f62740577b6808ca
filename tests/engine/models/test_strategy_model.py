"""The strategy network: deterministic integer positions at inference, gradients through every day,
and a loss that a small network can lower on real SSE returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import StrategyLossConfig, StrategyModelConfig
from engine.data import build_windows, load_bars
from engine.losses import strategy_loss
from engine.models import StrategyNetwork
from engine.regime import hindsight_labels

VARIANTS = [
    {"head": "gumbel"}, {"head": "gumbel", "hard": True}, {"head": "straight_through"},
    {"head": "concrete"}, {"head": "gumbel", "cell": "lstm"},
]


def network(**changes) -> StrategyNetwork:
    torch.manual_seed(0)
    return StrategyNetwork(StrategyModelConfig(feature_dim=12, state_dim=16, **changes))


@pytest.mark.parametrize("changes", VARIANTS)
def test_inference_positions_are_integers_0_to_10_and_repeatable(changes):
    net = network(**changes)  # left in training mode: deterministic must still switch noise and dropout off
    features = torch.randn(6, 20, 12) * 3
    first = net(features, tau=0.5, deterministic=True).positions
    second = net(features, tau=0.5, deterministic=True).positions
    assert first.shape == (6, 20)
    assert torch.equal(first, second)
    assert torch.equal(first, first.round()) and first.min() >= 0 and first.max() <= 10


@pytest.mark.parametrize("changes", VARIANTS)
def test_last_day_loss_reaches_first_day_logits(changes):
    net = network(**changes)
    day_logits = []  # the head's output each day, i.e. the very tensors the positions come from
    net.head.register_forward_hook(lambda module, args, out: day_logits.append(out) or out.retain_grad())
    net(torch.randn(4, 20, 12), tau=1.0).positions[:, -1].sum().backward()
    assert len(day_logits) == 20
    assert day_logits[0].grad is not None and day_logits[0].grad.abs().sum() > 0


def test_training_positions_are_expected_positions_within_0_to_10():
    out = network(head="concrete")(torch.randn(4, 20, 12), tau=1.0)
    assert out.positions.min() >= 0 and out.positions.max() <= 10
    assert not torch.equal(out.positions, out.positions.round())  # relaxed, not snapped
    hard = network(head="gumbel", hard=True)(torch.randn(4, 20, 12), tau=1.0).positions
    assert torch.equal(hard, hard.round())  # one-hot forward, soft backward


def test_unknown_head_or_cell_is_rejected():
    with pytest.raises(ValueError, match="head"):
        network(head="softmax")
    with pytest.raises(ValueError, match="cell"):
        network(cell="rnn")


def test_strategy_loss_falls_on_real_sse_sequences():
    ws = build_windows(load_bars("sse"))
    starts = np.arange(3000, 8000, 250)  # 20 sequences of 20 days across bull, bear and flat years
    days = starts[:, None] + np.arange(20)
    returns = torch.from_numpy(ws.next_returns(days)).float()
    features = torch.from_numpy(ws.daily[days]).float()
    regimes = torch.as_tensor(hindsight_labels(returns.numpy()))
    assert set(regimes.tolist()) == {0, 1, 2}
    torch.manual_seed(0)
    net = StrategyNetwork(StrategyModelConfig(feature_dim=ws.daily.shape[1], state_dim=16, dropout=0.0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    cfg = StrategyLossConfig()
    losses = []
    for _ in range(40):
        loss, _parts = strategy_loss(net(features, tau=1.0).positions, returns, regimes, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1e-3, losses[::5]


def test_optimizer_groups_decay_every_trainable_parameter_once():
    net = network()
    net.head[0].bias.requires_grad_(False)
    groups = net.optimizer_groups(0.05)
    params = [p for g in groups for p in g["params"]]
    assert [g["weight_decay"] for g in groups] == [0.05]
    assert len(params) == len({id(p) for p in params}) == sum(p.requires_grad for p in net.parameters())
    torch.optim.AdamW(groups)  # a valid optimiser definition
