"""Stage 2's risk-managing objective on simulated data: the network learns the interior mean-variance
position, its temperature reaches the floor on schedule, and a walk starts where the day before ended."""

from __future__ import annotations

import numpy as np
import torch

from engine.config import StrategyLossConfig, StrategyModelConfig
from engine.losses import utility_loss
from engine.models import StrategyNetwork
from engine.policy import previous_positions
from engine.training.strategy import annealed_tau, warm_days


def test_the_network_learns_the_interior_mean_variance_position_of_each_volatility():
    """mu = 5 bp a day, lambda 10: w* = mu / (lambda sigma^2) is 0.5 at 1 % daily volatility and 0.125
    at 2 %. The realised returns' noise only adds variance to the gradient (E[w r] = w mu), kept small
    so a short CPU run settles."""
    torch.manual_seed(0)
    cfg = StrategyModelConfig(feature_dim=1, state_dim=8, dropout=0.0)
    loss_cfg = StrategyLossConfig(kind="utility", risk_aversion=10.0, cost_bps=0.0)
    net = StrategyNetwork(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    mu, batch, days, steps = 5e-4, 64, 5, 300
    for step in range(steps):
        sigma = torch.where(torch.rand(batch, 1) < 0.5, 0.01, 0.02).expand(batch, days)
        returns = mu + 0.002 * torch.randn(batch, days)
        out = net((sigma * 100)[..., None], tau=annealed_tau(cfg, step, steps))
        loss, _ = utility_loss(out.positions, returns, sigma, loss_cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        vols = torch.tensor([1.0, 2.0])[:, None, None].expand(2, days, 1)
        calm, wild = net(vols, deterministic=True).positions[:, -1]
    assert 4 <= calm <= 6 and 0 <= wild <= 2 and wild < calm


def test_the_temperature_reaches_its_floor_at_the_configured_share_of_steps():
    cfg = StrategyModelConfig(tau_start=2.0, tau_floor=0.3, tau_anneal=0.7)
    taus = [annealed_tau(cfg, step, 100) for step in range(101)]
    assert taus[0] == 2.0 and taus[70] == 0.3 and taus[100] == 0.3 and taus[69] > 0.3
    assert all(a > b for a, b in zip(taus[:70], taus[1:71]))  # strictly down until the floor
    assert np.allclose(np.diff(np.log(taus[:71])), np.log(0.3 / 2.0) / 70)  # exponential


def test_a_walk_starts_from_the_position_picked_the_day_before():
    torch.manual_seed(0)
    net = StrategyNetwork(StrategyModelConfig(feature_dim=2, state_dim=4, dropout=0.0))
    with torch.no_grad():  # pick 10 on every day whose first feature is positive, else 0
        net.head[-1].weight.zero_()
        net.head[-1].bias.zero_()
        net.head[0].weight.zero_()
        net.head[0].weight[0, 0] = 10.0
        net.head[0].bias.zero_()
        net.head[-1].weight[10, 0], net.head[-1].weight[0, 0] = 5.0, -5.0
        net.head[-1].bias[0] = 1.0
    seq = 5
    features = np.zeros((30, 2), np.float32)
    features[:20, 0] = 1.0  # days 0-19: the network holds 10; from day 20: flat
    before = torch.from_numpy(features[10:15][None])
    start = previous_positions(net, before, torch.tensor([True]))
    assert float(start) == 10.0 and float(previous_positions(net, before, torch.tensor([False]))) == 0.0
    _, parts = utility_loss(torch.full((1, seq), 10.0), torch.zeros(1, seq), torch.zeros(1, seq),
                            StrategyLossConfig(kind="utility"), initial=start)
    assert float(parts["turnover"]) == 0.0  # its predecessor held 10: staying at 10 costs nothing


def test_warm_days_need_every_predecessor_inside_stage_two():
    in_stage = np.array([0, 1, 1, 1, 1, 0, 1, 1, 1], dtype=bool)
    assert warm_days(in_stage, 3).tolist() == [False, False, False, False, True, True, False, False, False]
