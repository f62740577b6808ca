"""Training objectives: the price losses on scale-free targets (point, pinball, Student-t NLL) and the
vectorised strategy loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from engine.config import StrategyLossConfig
from engine.regime import BEAR, BULL, SIDEWAYS

MAX_POSITION = 10.0
STD_EPS = 1e-8  # keeps std differentiable at 0 and bounds the information ratio (std floor 1e-4/day)

_PRICE_LOSSES = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.smooth_l1_loss}


def price_loss(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    """Mean loss over every sample and horizon ("huber" is smooth L1 with delta 1 on scaled targets)."""
    if kind not in _PRICE_LOSSES:
        raise ValueError(f"unknown price loss {kind!r}; choose one of {sorted(_PRICE_LOSSES)}")
    return _PRICE_LOSSES[kind](pred, target)


def pinball_loss(q_pred: Tensor, target: Tensor, levels: tuple[float, ...] | Tensor) -> Tensor:
    """Mean pinball (quantile) loss: q_pred [B, H, Q] at `levels` [Q], target [B, H].

    For level tau and u = y - q: tau * u when y is above q, (tau - 1) * u below, so its minimiser is
    the tau-quantile of y; averaged over samples, horizons and levels.
    """
    tau = torch.as_tensor(levels, dtype=q_pred.dtype, device=q_pred.device)
    u = target[..., None].to(q_pred.dtype) - q_pred
    return torch.maximum(tau * u, (tau - 1) * u).mean()


def student_t_nll(loc: Tensor, scale: Tensor, df: Tensor, target: Tensor) -> Tensor:
    """Mean negative log-likelihood of target under Student-t(df, loc, scale), written out (lgamma)."""
    z = (target.to(loc.dtype) - loc) / scale
    log_prob = (torch.lgamma((df + 1) / 2) - torch.lgamma(df / 2) - 0.5 * torch.log(df * math.pi)
                - torch.log(scale) - (df + 1) / 2 * torch.log1p(z * z / df))
    return -log_prob.mean()


def net_returns(positions: Tensor, returns: Tensor, cost_bps: float,
                initial: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Daily returns of holding positions/10 of the asset, net of costs, and the daily turnover.

    The position set at close t earns the return t -> t+1; the first day's turnover is from
    `initial` [B] (the position held the day before; None: flat).
    """
    weight = positions / MAX_POSITION
    before = weight.new_zeros(weight.shape[0]) if initial is None else initial.to(weight.dtype) / MAX_POSITION
    turnover = (weight - torch.cat([before[:, None], weight[:, :-1]], dim=1)).abs()
    return weight * returns - cost_bps * 1e-4 * turnover, turnover


def utility_loss(positions: Tensor, returns: Tensor, sigma: Tensor, cfg: StrategyLossConfig,
                 regimes: Tensor | None = None, initial: Tensor | None = None,
                 ) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean over days of -(w_t r_{t+1} - lambda_t / 2 w_t^2 sigma_t^2 - cost |w_t - w_{t-1}|), w = position / 10.

    Concave in w, so an interior position is optimal when return and risk say so (w* = mu / (lambda sigma^2)
    without costs). sigma [B, S] is the causal daily volatility known at t; regimes [B, S] the causal
    labels (-1 unknown) that scale lambda by cfg.<regime>_risk_scale; initial [B] the position held before.
    """
    returns = returns.to(positions.dtype)
    strat, turnover = net_returns(positions, returns, cfg.cost_bps, initial)
    weight = positions / MAX_POSITION
    risk_aversion = torch.full_like(weight, cfg.risk_aversion)
    if regimes is not None:
        by_label = [1.0] * 4  # at label + 1: -1 (unknown) keeps lambda
        by_label[BEAR + 1], by_label[SIDEWAYS + 1] = cfg.bear_risk_scale, cfg.sideways_risk_scale
        by_label[BULL + 1] = cfg.bull_risk_scale
        scale = torch.tensor(by_label, dtype=weight.dtype, device=weight.device)
        risk_aversion = risk_aversion * scale[regimes.long() + 1]
    penalty = 0.5 * risk_aversion * (weight * sigma.to(weight.dtype)) ** 2
    utility = strat - penalty
    parts = {"utility": utility.mean(), "return": strat.mean(), "risk": penalty.mean(),
             "turnover": turnover.mean(), "position": weight.mean()}
    return -utility.mean(), {k: v.detach() for k, v in parts.items()}


def causal_momentum(returns: Tensor, lookback: int) -> Tensor:
    """10 where the trailing `lookback`-day mean return up to day t-1 is positive, else 0 (causal)."""
    s = returns.shape[1]
    csum = F.pad(returns.cumsum(dim=1), (1, 0))  # csum[:, t] = sum of returns before day t
    start = (torch.arange(s, device=returns.device) - lookback).clamp_min(0)
    trailing = csum[:, :s] - csum[:, start]
    return (trailing > 0).to(returns.dtype) * MAX_POSITION


def benchmark_positions(returns: Tensor, regimes: Tensor, cfg: StrategyLossConfig,
                        momentum: Tensor | None) -> Tensor:
    """Per-day benchmark position of each sequence: bull 10, bear cfg.bear_position, sideways momentum."""
    if momentum is None:
        momentum = causal_momentum(returns, cfg.momentum_lookback)
    regimes = regimes[:, None]
    sideways_or_bear = torch.where(regimes == BEAR, cfg.bear_position, momentum.to(returns.dtype))
    return torch.where(regimes == BULL, MAX_POSITION, sideways_or_bear)


def max_drawdown(daily: Tensor) -> Tensor:
    """Largest fall from a running peak of the compounded curve that starts at 1, per sample."""
    equity = torch.cumprod(1 + daily, dim=1)
    peak = torch.cummax(equity, dim=1).values.clamp_min(1.0)
    return (1 - equity / peak).amax(dim=1)


def _std(x: Tensor) -> Tensor:
    return (x.var(dim=1, correction=0) + STD_EPS).sqrt()


def strategy_loss(
    positions: Tensor,
    returns: Tensor,
    regimes: Tensor,
    cfg: StrategyLossConfig,
    momentum_positions: Tensor | None = None,
    initial: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Batch mean of: -(log-growth over the regime benchmark) + risk + opportunity [- IR].

    positions [B, S] in 0..10, returns [B, S] next-day simple returns, regimes [B] (hindsight labels).
    Benchmarks pay the same costs: bull -> 10, bear -> cfg.bear_position, sideways -> momentum.
    initial [B]: the strategy's position the day before (None: flat).
    """
    returns = returns.to(positions.dtype)
    strat, turnover = net_returns(positions, returns, cfg.cost_bps, initial)
    bench_positions = benchmark_positions(returns, regimes, cfg, momentum_positions)
    bench, _ = net_returns(bench_positions, returns, cfg.cost_bps)
    excess = torch.log1p(strat).sum(dim=1) - torch.log1p(bench).sum(dim=1)

    churn = (positions[:, 1:] - positions[:, :-1]).abs().mean(dim=1) / MAX_POSITION
    risk = (
        cfg.volatility_weight * _std(strat)
        + cfg.drawdown_weight * max_drawdown(strat)
        + cfg.churn_weight * churn
    )

    weight = positions / MAX_POSITION
    missed = (F.relu(returns) * (1 - weight)).mean(dim=1)
    exposed = (F.relu(-returns) * weight).mean(dim=1)
    opportunity = torch.where(regimes == BULL, missed, torch.where(regimes == BEAR, exposed, 0.0))

    daily_excess = strat - bench
    ir = daily_excess.mean(dim=1) / _std(daily_excess)

    per_sample = -cfg.return_weight * excess + cfg.risk_weight * risk + cfg.opportunity_weight * opportunity
    if cfg.information_ratio_weight > 0:
        per_sample = per_sample - cfg.information_ratio_weight * ir
    parts = {
        "return": excess.mean(), "risk": risk.mean(), "opportunity": opportunity.mean(),
        "ir": ir.mean(), "turnover": turnover.mean(),
    }
    return per_sample.mean(), {k: v.detach() for k, v in parts.items()}
