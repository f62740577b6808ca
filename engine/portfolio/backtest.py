"""Portfolio backtest: target weights decided at a close, filled at the next open, costs per name.

Accounting in units (fractional shares) and cash, cash earning 0. At a decision close t the rule
gives target weights w; they fill at day f = t + 1's open (fill="next-open"; a name without an
open that day fills at its close) or at close t itself (fill="close", and data without opens).
With h_i = units_i x fill_i the holdings before the trade and E- = cash + sum h the equity then,
the post-trade equity E solves E = E- - sum_i c_i |w_i E - h_i| (c_i: cost + slippage on a buy,
plus stamp duty on a sell), exactly: E = (E- + sum c_i s_i h_i) / (1 + sum c_i s_i w_i) with s_i
the trade's sign, re-solved until the signs settle. A name that cannot trade at the fill keeps
its units: no price that day (suspended), or with A-share rules a rise at limit-up or a fall at
limit-down (engine/backtest/ashare.py, by each name's code). Between fills nothing trades and
equity is cash + units . close (a name's last close while it is suspended).

Decisions come every cfg.rebalance days and, with cfg.band, on the first close where a weight has
drifted further than the band from its target. That makes the path depend on itself, so the loop
runs over decisions; everything inside is vectorised over instruments and days.

Baselines on the same days, fills and costs: equal_weight (1/N over the names with a close),
inverse_vol (1/trailing vol over the same names), momentum (top-k by the 12-1 return), and the
index (the given universe index, else the daily equal-weight average of its names; no costs).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.backtest.ashare import daily_limits, limit_days
from engine.backtest.metrics import compute_metrics
from engine.backtest.stats import sharpe_statistics
from engine.config import FILLS, BacktestConfig
from engine.data import BarTable
from engine.portfolio.construct import (
    PortfolioConfig,
    PortfolioWarning,
    optimised_or_fallback,
    robust_weights,
)
from engine.portfolio.risk import betas, ledoit_wolf, risk_report

NO_OPENS = "the data have no opens: decisions fill at the close"
BASELINES = ("equal_weight", "inverse_vol", "momentum")

Decide = Callable[[int, np.ndarray], np.ndarray]  # (day, held weights at its close) -> target weights


@dataclass
class Market:
    """Aligned panels over the full history (earlier days feed volatilities and momentum)."""

    dates: pd.DatetimeIndex  # [D]
    instruments: list[str]  # [N]
    close: np.ndarray  # [D, N] raw closes, NaN where the name does not trade (yet)
    open: np.ndarray | None = None  # [D, N]; None: close-only data
    index: np.ndarray | None = None  # [D] the universe's index level; None: its equal-weight average

    def returns(self) -> np.ndarray:
        """[D, N] close-to-close simple returns (NaN where either close is missing)."""
        c = self.close
        return np.vstack([np.full((1, c.shape[1]), np.nan), c[1:] / c[:-1] - 1.0])

    @classmethod
    def from_tables(cls, tables: list[BarTable], index: pd.Series | None = None) -> Market:
        """Panels on the union of the tables' dates (NaN where a name has no bar); index: closes by date."""
        panel = {col: pd.concat([t.frame[col].rename(i) for i, t in enumerate(tables)], axis=1, sort=True)
                 for col in ("close", "open")}
        close, opens = panel["close"].to_numpy(dtype=np.float64), panel["open"].to_numpy(dtype=np.float64)
        dates = panel["close"].index
        level = None if index is None else index.reindex(dates).ffill().to_numpy(dtype=np.float64)
        return cls(dates, [t.instrument for t in tables], close, opens if np.isfinite(opens).any() else None, level)


@dataclass
class Forecasts:
    """What the model knows at each close, per name: 1-day and horizon log returns of the median
    and of the 10 % / 90 % quantiles (NaN: no forecast that day, or a point head's quantiles)."""

    median: np.ndarray  # [D, N, H] log(pred_close_{t+h} / close_t)
    q10: np.ndarray  # [D, N, H]
    q90: np.ndarray  # [D, N, H]

    def scores(self) -> np.ndarray:
        """[D, N] the horizon's median over the width of its band (the median alone for a point head)."""
        median, width = self.median[..., -1], self.q90[..., -1] - self.q10[..., -1]
        scaled = np.divide(median, width, out=np.full(median.shape, np.nan), where=np.isfinite(width) & (width > 0))
        return np.where(np.isfinite(scaled), scaled, median)


@dataclass
class Simulation:
    equity: np.ndarray  # [B] at each close
    returns: np.ndarray  # [B]
    held: np.ndarray  # [B, N] weights at each close
    targets: np.ndarray  # [B, N] targets decided at that close (NaN on days without a decision)
    traded: np.ndarray  # [B] traded notional / pre-trade equity at that day's fill
    costs: np.ndarray  # [B] costs paid / pre-trade equity


@dataclass
class PortfolioResult:
    frame: pd.DataFrame  # per date: equity, strategy_return, turnover, invested, holdings, <baseline>_equity
    weights: pd.DataFrame  # [dates, instruments] the book at each close
    targets: pd.DataFrame  # [dates, instruments] decided at that close (NaN: no decision)
    metrics: dict
    baselines: dict[str, dict]
    risk: dict
    notes: list[str] = field(default_factory=list)


def fill_prices(market: Market, cfg: BacktestConfig) -> tuple[np.ndarray, int, str | None]:
    """Fill prices [D, N], the lag from decision to fill (1 next-open, 0 close) and why the fill
    differs from the one asked for."""
    if cfg.fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, not {cfg.fill!r}")
    opens = market.open
    if cfg.fill == "close":
        return market.close, 0, None
    if opens is None or not np.isfinite(opens).any():
        return market.close, 0, NO_OPENS
    usable = np.isfinite(opens) & (opens > 0)
    return np.where(usable, opens, market.close), 1, None


def fill_limits(market: Market, fills: np.ndarray, cfg: BacktestConfig) -> tuple[np.ndarray, np.ndarray]:
    """[D, N] fill at limit-up / limit-down against the previous close, per name's board."""
    if not cfg.ashare_rules:
        none = np.zeros(fills.shape, dtype=bool)
        return none, none
    limits = np.column_stack([daily_limits(name, market.dates, cfg.limit_pct) for name in market.instruments])
    reference = np.vstack([np.full((1, fills.shape[1]), np.nan), market.close[:-1]])
    return limit_days(reference, fills, limits)


def trade(units: np.ndarray, cash: float, target: np.ndarray, price: np.ndarray, up: np.ndarray,
           down: np.ndarray, buy: np.ndarray, sell: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """New units and cash after trading to `target` at `price`; traded notional and costs (both as
    fractions of the pre-trade equity)."""
    value = np.where(units != 0, units * np.nan_to_num(price), 0.0)
    before = cash + value.sum()
    want = np.where(np.isfinite(target), target, 0.0) * before
    frozen = ~np.isfinite(price) | (price <= 0) | (up & (want > value)) | (down & (want < value))
    room = max(1.0 - value[frozen].sum() / before, 0.0)
    w = np.where(frozen, 0.0, np.nan_to_num(target))
    w = w * min(1.0, room / w.sum()) if w.sum() > 0 else w
    equity = before
    for _ in range(4):  # the signs settle at once unless a trade is ~0
        sign = np.where(frozen, 0.0, np.sign(w * equity - value))
        c = np.where(sign > 0, buy, sell)
        equity = (before + np.sum(c * sign * value)) / (1.0 + np.sum(c * sign * w))
        if np.array_equal(sign, np.where(frozen, 0.0, np.sign(w * equity - value))):
            break
    new = np.where(frozen, units, np.divide(w * equity, price, out=np.zeros_like(w), where=~frozen))
    traded = np.abs(np.where(frozen, 0.0, w * equity - value)).sum()
    cash = equity - np.where(new != 0, new * np.nan_to_num(price), 0.0).sum()
    return new, float(cash), float(traded / before), float((before - equity) / before)


def cost_rates(cfg: BacktestConfig, n: int, extra_bps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[n] buy and sell cost rates per name: commission and slippage on both sides, stamp duty on
    sales; extra_bps [n] on top for names dearer to trade. One source for the backtest, the paper
    ledger and the orders, so the three pay the same."""
    buy = np.full(n, (cfg.cost_bps + cfg.slippage_bps) / 1e4)
    if extra_bps is not None:
        buy = buy + np.asarray(extra_bps, dtype=np.float64) / 1e4
    return buy, buy + cfg.stamp_duty_bps / 1e4

def simulate(market: Market, span: np.ndarray, decide: Decide, pcfg: PortfolioConfig, cfg: BacktestConfig,
             costs_bps: np.ndarray | None = None) -> tuple[Simulation, str | None]:
    """The book over day indices `span` (consecutive) trading the decisions of `decide`;
    costs_bps [N]: extra cost per name on top of cfg's, for names dearer to trade."""
    fills, lag, note = fill_prices(market, cfg)
    up, down = fill_limits(market, fills, cfg)
    first, days = int(span[0]), len(span)
    close = pd.DataFrame(market.close[first:first + days]).ffill().to_numpy()  # a suspended name's last close
    fills, up, down = fills[first:first + days], up[first:first + days], down[first:first + days]
    buy, sell = cost_rates(cfg, close.shape[1], costs_bps)
    n = close.shape[1]
    units, cash = np.zeros(n), 1.0
    equity, held = np.ones(days), np.zeros((days, n))
    targets, traded, paid = np.full((days, n), np.nan), np.zeros(days), np.zeros(days)
    t = 0
    while t < days:
        target = decide(first + t, held[t])
        targets[t] = target
        f = t + lag
        if f >= days:
            break
        units, cash, traded[f], paid[f] = trade(units, cash, target, fills[f], up[f], down[f],
                                                 np.broadcast_to(buy, (n,)), np.broadcast_to(sell, (n,)))
        value = np.where(units != 0, units * np.nan_to_num(close[f:]), 0.0)
        equity[f:] = cash + value.sum(-1)
        held[f:] = value / equity[f:, None]
        nxt = t + pcfg.rebalance
        if pcfg.band is not None:
            drift = np.abs(held[f:nxt] - np.nan_to_num(target)).max(-1) > pcfg.band
            if drift.any():
                nxt = min(nxt, f + int(np.argmax(drift)))
        t = max(nxt, t + 1)
    returns = equity / np.concatenate([[1.0], equity[:-1]]) - 1.0
    return Simulation(equity, returns, held, targets, traded, paid), note


def trailing_vol(market: Market, lookback: int) -> np.ndarray:
    """[D, N] standard deviation of the last `lookback` daily returns up to t (half of them at least)."""
    return pd.DataFrame(market.returns()).rolling(lookback, min_periods=lookback // 2).std().to_numpy()


def momentum_scores(market: Market, long: int = 252, skip: int = 21) -> np.ndarray:
    """[D, N] the 12-1 momentum: close_{t-skip} / close_{t-long} - 1 (NaN without that history)."""
    c = pd.DataFrame(market.close)
    return (c.shift(skip) / c.shift(long) - 1.0).to_numpy()


def index_returns(market: Market) -> np.ndarray:
    """[D] the universe index's daily returns: the given index, else the mean over names that traded."""
    if market.index is not None:
        level = pd.Series(market.index)
        return level.pct_change(fill_method=None).to_numpy()
    r = market.returns()
    counted = np.isfinite(r).sum(-1)
    return np.divide(np.nansum(r, -1), counted, out=np.full(len(r), np.nan), where=counted > 0)


def _covariances(market: Market, days: np.ndarray, lookback: int) -> np.ndarray:
    """[len(days), N, N] Ledoit-Wolf covariances of the `lookback` returns up to each day."""
    r = market.returns()
    return np.stack([ledoit_wolf(r[max(d - lookback + 1, 1):d + 1]) for d in days])


def _metrics(sim: Simulation, bench: np.ndarray, dates: pd.DatetimeIndex, cfg: BacktestConfig) -> dict:
    returns = pd.Series(sim.returns, index=dates)
    invested = np.concatenate([[0.0], sim.held[:-1].sum(-1)])  # the book earning day t's move
    m = compute_metrics(returns, bench, invested, sim.traded, cfg.risk_free)
    holdings = (sim.held > 1e-9).sum(-1)
    return {**m, **sharpe_statistics(sim.returns, cfg.risk_free), "average_holdings": float(holdings.mean()),
            "costs": float(sim.costs.sum())}


def backtest_span(market: Market, forecasts: Forecasts, cfg: BacktestConfig) -> np.ndarray:
    """Day indices from the first to the last day with any forecast, inside cfg.start..cfg.end."""
    has = np.isfinite(forecasts.median[..., -1]).any(-1)
    if not has.any():
        raise ValueError("no forecasts to trade")
    days = np.arange(len(market.dates))
    inside = (days >= np.argmax(has)) & (days <= len(has) - 1 - np.argmax(has[::-1]))
    if cfg.start:
        inside &= market.dates >= pd.Timestamp(cfg.start)
    if cfg.end:
        inside &= market.dates <= pd.Timestamp(cfg.end)
    if inside.sum() < 2:
        raise ValueError("the portfolio backtest needs at least two days with forecasts in its period")
    return days[inside]


def decision_rule(market: Market, forecasts: Forecasts, pcfg: PortfolioConfig) -> tuple[Decide, list[str]]:
    """pcfg.method's target weights for a day from what is known at its close (scores, trailing
    volatilities, covariances), and the list its mean-variance fallbacks are told in. The backtest and
    the paper ledger of a live portfolio (engine/portfolio/ledger.py) decide with this one rule."""
    tradable = np.isfinite(market.close)
    scores = np.where(tradable, forecasts.scores(), np.nan)
    notes: list[str] = []
    if pcfg.method != "mean_variance":
        chosen = robust_weights(pcfg.method, scores, trailing_vol(market, pcfg.lookback), pcfg)
        return (lambda day, held: chosen[day]), notes
    covs: dict[int, np.ndarray] = {}
    history = pd.DataFrame(tradable).rolling(pcfg.lookback, min_periods=pcfg.lookback).sum().to_numpy()
    mu = np.where(history >= pcfg.lookback, forecasts.median[..., 0], np.nan)  # a full covariance history

    def decide(day: int, held: np.ndarray) -> np.ndarray:
        if day not in covs:
            covs[day] = _covariances(market, np.array([day]), pcfg.lookback)[0]
        w, note = optimised_or_fallback(np.expm1(mu[day]), covs[day], held, scores[day], pcfg,
                                        f"on {market.dates[day]:%Y-%m-%d}")
        if note:
            notes.append(note)
        return w
    return decide, notes


def portfolio_backtest(market: Market, forecasts: Forecasts, pcfg: PortfolioConfig, cfg: BacktestConfig,
                       costs_bps: np.ndarray | None = None) -> PortfolioResult:
    """Trade pcfg.method's weights over the forecast days (cfg's period), next to the baselines,
    with the risk report (VaR from the covariance and from the model's quantiles, their breaches)."""
    span = backtest_span(market, forecasts, cfg)
    dates = market.dates[span]
    tradable = np.isfinite(market.close)
    vol = trailing_vol(market, pcfg.lookback)
    decide, notes = decision_rule(market, forecasts, pcfg)
    with warnings.catch_warnings():
        warnings.simplefilter("always", PortfolioWarning)  # every fallback is told, not only the first
        sim, fill_note = simulate(market, span, decide, pcfg, cfg, costs_bps)
    everyone = np.where(tradable, 0.0, np.nan)
    robust = PortfolioConfig(top_k=market.close.shape[1], rebalance=pcfg.rebalance, band=pcfg.band,
                             max_weight=1.0, min_cash=pcfg.min_cash, lookback=pcfg.lookback)
    paths = {
        "equal_weight": robust_weights("topk", everyone, vol, robust),
        "inverse_vol": robust_weights("inverse_vol", np.where(np.isfinite(vol), everyone, np.nan), vol, robust),
        "momentum": robust_weights("topk", np.where(tradable, momentum_scores(market, *pcfg.momentum), np.nan),
                                   vol, PortfolioConfig(top_k=pcfg.top_k, min_cash=pcfg.min_cash)),
    }
    bench = index_returns(market)[span]
    bench[0] = 0.0
    baselines, frame = {}, pd.DataFrame(index=dates)
    for name, weights in paths.items():
        base, _ = simulate(market, span, lambda day, held, w=weights: w[day], pcfg, cfg, costs_bps)
        baselines[name] = _metrics(base, bench, dates, cfg)
        frame[f"{name}_equity"] = base.equity
    baselines["index"] = compute_metrics(pd.Series(bench, index=dates), risk_free=cfg.risk_free)
    frame["index_equity"] = np.cumprod(1.0 + np.nan_to_num(bench))
    frame.insert(0, "equity", sim.equity)
    frame.insert(1, "strategy_return", sim.returns)
    frame.insert(2, "turnover", sim.traded)
    frame.insert(3, "invested", sim.held.sum(-1))
    frame.insert(4, "holdings", (sim.held > 1e-9).sum(-1))
    frame.index.name = "date"
    metrics = {**_metrics(sim, bench, dates, cfg), "fill": "close" if fill_note else cfg.fill,
               "method": pcfg.method, "fallbacks": len(notes)}
    if fill_note:
        metrics["fill_note"] = fill_note
    risk = _risk(market, forecasts, sim, span, pcfg)
    names = market.instruments
    return PortfolioResult(frame, pd.DataFrame(sim.held, index=dates, columns=names),
                           pd.DataFrame(sim.targets, index=dates, columns=names), metrics, baselines, risk, notes)


def _risk(market: Market, forecasts: Forecasts, sim: Simulation, span: np.ndarray, pcfg: PortfolioConfig) -> dict:
    """risk_report on the book through each next day: the target where one was decided, else the held
    book; covariances estimated every rebalance period (held until the next) to keep the cost down."""
    book = np.where(np.isfinite(sim.targets).all(-1, keepdims=True), sim.targets, sim.held)
    estimated = span[:: pcfg.rebalance]
    covs = _covariances(market, estimated, pcfg.lookback)[np.arange(len(span)) // pcfg.rebalance]
    next_returns = np.append(sim.returns[1:], np.nan)
    r = pd.DataFrame(market.returns(), columns=market.instruments)
    beta = betas(r, pd.Series(index_returns(market)), pcfg.lookback).to_numpy()[span]
    quantiles = (forecasts.median[span, :, 0], forecasts.q10[span, :, 0], forecasts.q90[span, :, 0])
    if not np.isfinite(quantiles[1]).any():
        quantiles = None  # a point head: no model VaR
    return risk_report(book, covs, next_returns, beta, market.instruments, market.dates[span],
                       pcfg.var_level, quantiles)


__all__ = [
    "BASELINES",
    "Forecasts",
    "Market",
    "PortfolioResult",
    "Simulation",
    "backtest_span",
    "cost_rates",
    "decision_rule",
    "fill_limits",
    "fill_prices",
    "index_returns",
    "momentum_scores",
    "portfolio_backtest",
    "simulate",
    "trade",
    "trailing_vol",
]
