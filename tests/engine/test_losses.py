"""Objectives: price losses by hand, and the vectorised strategy loss against a per-sample loop."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.config import StrategyLossConfig
from engine.data import build_windows, load_bars
from engine.losses import causal_momentum, price_loss, strategy_loss, utility_loss
from engine.regime import BEAR, BULL, SIDEWAYS

EPS = 1e-8  # the loss's variance floor (engine.losses.STD_EPS)


def strategy_loss_reference(positions, returns, regimes, cfg, momentum_positions=None):
    """The strategy objective written day by day, sample by sample, in float64."""
    totals, parts = [], {"return": [], "risk": [], "opportunity": [], "ir": [], "turnover": []}
    for b in range(len(positions)):
        p, r, regime = positions[b], returns[b], int(regimes[b])
        if regime == BULL:
            bench_pos = [10.0] * len(r)
        elif regime == BEAR:
            bench_pos = [cfg.bear_position] * len(r)
        elif momentum_positions is not None:
            bench_pos = list(momentum_positions[b])
        else:
            lb = cfg.momentum_lookback
            bench_pos = [10.0 if t > 0 and np.mean(r[max(0, t - lb):t]) > 0 else 0.0 for t in range(len(r))]

        def daily(pos, r=r):
            out, turns, prev = [], [], 0.0
            for t in range(len(r)):
                w = pos[t] / 10
                turns.append(abs(w - prev))
                out.append(w * r[t] - cfg.cost_bps / 1e4 * turns[-1])
                prev = w
            return np.array(out), np.array(turns)

        strat, turns = daily(p)
        bench, _ = daily(bench_pos)
        excess = sum(math.log(1 + d) for d in strat) - sum(math.log(1 + d) for d in bench)
        equity = peak = 1.0
        drawdown = 0.0
        for d in strat:
            equity *= 1 + d
            peak = max(peak, equity)
            drawdown = max(drawdown, 1 - equity / peak)
        churn = np.mean([abs(p[t] - p[t - 1]) for t in range(1, len(p))]) / 10
        risk = (cfg.volatility_weight * math.sqrt(np.var(strat) + EPS) + cfg.drawdown_weight * drawdown
                + cfg.churn_weight * churn)
        if regime == BULL:
            opportunity = np.mean([max(r[t], 0) * (1 - p[t] / 10) for t in range(len(r))])
        elif regime == BEAR:
            opportunity = np.mean([max(-r[t], 0) * p[t] / 10 for t in range(len(r))])
        else:
            opportunity = 0.0
        gap = strat - bench
        ir = np.mean(gap) / math.sqrt(np.var(gap) + EPS)
        total = -cfg.return_weight * excess + cfg.risk_weight * risk + cfg.opportunity_weight * opportunity
        if cfg.information_ratio_weight > 0:
            total -= cfg.information_ratio_weight * ir
        totals.append(total)
        for key, value in zip(parts, (excess, risk, opportunity, ir, np.mean(turns))):
            parts[key].append(value)
    return np.mean(totals), {k: np.mean(v) for k, v in parts.items()}


@pytest.fixture(scope="module")
def real_batch():
    """24 sequences of 20 real SSE next-day returns, with random positions and all three regimes."""
    ws = build_windows(load_bars("sse"))
    days = np.arange(2000, 8000, 250)[:, None] + np.arange(20)
    returns = torch.from_numpy(ws.next_returns(days))
    rng = np.random.default_rng(0)
    positions = torch.from_numpy(rng.uniform(0, 10, size=returns.shape))
    positions[::4] = torch.from_numpy(rng.integers(0, 11, size=positions[::4].shape)).double()
    regimes = torch.from_numpy(np.arange(len(days)) % 3)
    return positions, returns, regimes


@pytest.mark.parametrize("changes", [
    {}, {"information_ratio_weight": 0.5, "cost_bps": 25.0}, {"momentum_lookback": 2, "bear_position": 0.0},
])
def test_vectorised_strategy_loss_equals_per_sample_reference(real_batch, changes):
    positions, returns, regimes = real_batch
    cfg = replace(StrategyLossConfig(), **changes)
    loss, parts = strategy_loss(positions, returns, regimes, cfg)
    ref_loss, ref_parts = strategy_loss_reference(positions.numpy(), returns.numpy(), regimes.numpy(), cfg)
    assert loss.item() == pytest.approx(ref_loss, abs=1e-6)
    for key, value in ref_parts.items():
        assert parts[key].item() == pytest.approx(value, abs=1e-6), key


def test_supplied_momentum_positions_are_the_sideways_benchmark(real_batch):
    positions, returns, regimes = real_batch
    momentum = torch.from_numpy(np.random.default_rng(1).integers(0, 11, size=returns.shape)).double()
    cfg = StrategyLossConfig(information_ratio_weight=0.2)
    loss, _ = strategy_loss(positions, returns, regimes, cfg, momentum_positions=momentum)
    ref_loss, _ = strategy_loss_reference(positions.numpy(), returns.numpy(), regimes.numpy(), cfg,
                                          momentum.numpy())
    assert loss.item() == pytest.approx(ref_loss, abs=1e-6)


def test_momentum_benchmark_is_causal_within_the_sequence(real_batch):
    _, returns, _ = real_batch
    before = causal_momentum(returns, 5)
    changed = returns.clone()
    changed[:, 12:] = -changed[:, 12:] * 3
    after = causal_momentum(changed, 5)
    assert torch.equal(before[:, :13], after[:, :13])  # day 12's position uses returns up to day 11
    assert (before[:, 0] == 0).all()


def test_buy_and_hold_in_a_bull_period_matches_its_benchmark_exactly():
    returns = torch.tensor([[0.01, -0.02, 0.03, 0.005]], dtype=torch.float64)
    cfg = StrategyLossConfig(cost_bps=10.0, risk_weight=0.0, opportunity_weight=0.0)
    buy_and_hold = torch.full((1, 4), 10.0, dtype=torch.float64)
    loss, parts = strategy_loss(buy_and_hold, returns, torch.tensor([BULL]), cfg)
    assert parts["return"].item() == 0.0 and loss.item() == 0.0
    assert parts["turnover"].item() == pytest.approx(0.25)  # the entry from flat, once


def test_costs_are_charged_per_unit_of_turnover():
    flat = torch.zeros(1, 4, dtype=torch.float64)
    cfg = StrategyLossConfig(cost_bps=50.0, risk_weight=0.0, opportunity_weight=0.0, bear_position=0.0)
    churning = torch.tensor([[10.0, 0.0, 10.0, 0.0]], dtype=torch.float64)
    loss, parts = strategy_loss(churning, flat, torch.tensor([BEAR]), cfg)
    assert parts["return"].item() == pytest.approx(4 * math.log(1 - 0.005))  # in, out, in, out
    assert loss.item() == pytest.approx(-parts["return"].item())


def test_loss_has_finite_gradients_even_for_a_flat_cost_free_strategy():
    positions = torch.zeros(3, 20, dtype=torch.float64, requires_grad=True)
    returns = torch.zeros(3, 20, dtype=torch.float64)
    cfg = StrategyLossConfig(cost_bps=0.0, information_ratio_weight=1.0)
    loss, parts = strategy_loss(positions, returns, torch.tensor([BEAR, SIDEWAYS, BULL]), cfg)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(positions.grad).all()
    assert all(v.dim() == 0 and not v.requires_grad for v in parts.values())


def test_price_loss_kinds_match_their_definitions():
    pred = torch.tensor([[0.0, 1.0, -3.0]])
    target = torch.tensor([[0.5, 1.0, 0.0]])
    assert price_loss(pred, target, "mse").item() == pytest.approx((0.25 + 0 + 9) / 3)
    assert price_loss(pred, target, "mae").item() == pytest.approx((0.5 + 0 + 3) / 3)
    assert price_loss(pred, target, "huber").item() == pytest.approx((0.5 * 0.25 + 0 + 2.5) / 3)
    with pytest.raises(ValueError, match="quantile"):
        price_loss(pred, target, "quantile")


def test_utility_loss_equals_a_hand_computation():
    cfg = StrategyLossConfig(kind="utility", risk_aversion=4.0, cost_bps=10.0, bear_risk_scale=2.0)
    positions = torch.tensor([[10.0, 5.0, 5.0]])
    returns = torch.tensor([[0.01, -0.02, 0.005]])
    sigma = torch.tensor([[0.01, 0.02, 0.015]])
    regimes = torch.tensor([[BULL, BEAR, -1]])
    loss, parts = utility_loss(positions, returns, sigma, cfg, regimes, initial=torch.tensor([2.0]))
    w, w_before, lam = [1.0, 0.5, 0.5], [0.2, 1.0, 0.5], [4.0, 8.0, 4.0]
    days = [w[t] * float(returns[0, t]) - lam[t] / 2 * w[t] ** 2 * float(sigma[0, t]) ** 2
            - 10e-4 * abs(w[t] - w_before[t]) for t in range(3)]
    assert float(loss) == pytest.approx(-sum(days) / 3, abs=1e-9)  # float32 of ~1e-4 figures
    assert float(parts["turnover"]) == pytest.approx((0.8 + 0.5 + 0.0) / 3, rel=1e-6)


def test_the_utility_prefers_an_interior_position_when_return_and_risk_say_so():
    """Constant expected return mu and variance sigma^2: the best constant position on the 0..10 grid
    is the one nearest 10 mu / (lambda sigma^2); a riskier (bear, lambda x 2) regime halves it."""
    mu, sigma, lam = 4e-4, 0.01, 8.0  # w* = 0.5
    cfg = StrategyLossConfig(kind="utility", risk_aversion=lam, cost_bps=10.0, bear_risk_scale=2.0)
    grid = torch.arange(11.0)[:, None].expand(11, 20)  # each row holds one position all along
    returns, vol = torch.full((11, 20), mu), torch.full((11, 20), sigma)

    def best(regime: int) -> int:
        per_position = [float(utility_loss(grid[k:k + 1], returns[:1], vol[:1], cfg, torch.full((1, 20), regime),
                                           initial=grid[k:k + 1, 0])[0]) for k in range(11)]
        return int(np.argmin(per_position))

    assert best(SIDEWAYS) == round(10 * mu / (lam * sigma ** 2)) == 5
    assert best(BEAR) in (2, 3)  # w* = 0.25
    assert best(BULL) == 5 and 0 < best(BEAR) < best(BULL) < 10


def test_a_walk_that_starts_where_the_day_before_ended_pays_no_cost_to_stay():
    cfg = StrategyLossConfig(kind="utility", cost_bps=10.0)
    held = torch.full((1, 5), 10.0)
    returns, sigma = torch.zeros(1, 5), torch.zeros(1, 5)
    _, warm = utility_loss(held, returns, sigma, cfg, initial=torch.tensor([10.0]))
    _, flat = utility_loss(held, returns, sigma, cfg)
    assert float(warm["turnover"]) == 0.0 and float(flat["turnover"]) == pytest.approx(1 / 5)
    _, excess = strategy_loss(held, returns, torch.tensor([SIDEWAYS]), StrategyLossConfig(kind="excess"),
                              initial=torch.tensor([10.0]))
    assert float(excess["turnover"]) == 0.0  # the excess loss's first day starts from it too
