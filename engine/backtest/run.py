"""Daily backtest of positions 0..10 with costs, optional A-share rules and baselines.

Accounting (exact, vectorised with a cumulative product): the position p_t set at close t is a
target exposure w_t = p_t / 10 of equity, held from close t to close t+1 (fractional shares,
rebalanced at every close). Over day t equity grows by g_t = 1 + w_{t-1} r_t and the holding
drifts to w~_t = w_{t-1} (1 + r_t) / g_t; rebalancing to w_t at the close trades the notional
|w_t E_t - w~_t E~_t| and pays cost c = (cost_bps + slippage_bps) / 1e4 on it, on that day.
Solving for the post-trade equity E_t gives the factor f_t = (1 + c w~_t) / (1 + c w_t) on a buy
and (1 - c w~_t) / (1 - c w_t) on a sell, so E_t = prod(g f). A unit of turnover is a notional
equal to the equity: a position change of 10 up to the day's drift. The book starts in cash.

A-share rules (cfg.ashare_rules): the position cannot rise on a limit-up close nor fall on a
limit-down close (close / previous close - 1 within 1e-4 of +-limit_pct). T+1 needs no extra
rule here: shares bought at close t can first be sold at close t+1, the next decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from engine.backtest.metrics import compute_metrics, drawdown
from engine.config import HORIZON, BacktestConfig
from engine.regime import causal_labels, regime_names

FORECAST_GAIN = 5.0  # follow_forecast: position 5 + gain * (predicted 1-day log return / daily vol)
VOL_DAYS = 20  # trailing days of the follow_forecast volatility
LIMIT_TOL = 1e-4

Array = np.ndarray | torch.Tensor


@dataclass
class BacktestResult:
    frame: pd.DataFrame  # one row per date (see run_backtest)
    metrics: dict
    baselines: dict[str, dict] = field(default_factory=dict)
    per_regime: dict[str, dict] = field(default_factory=dict)


def _cost(cfg: BacktestConfig) -> float:
    return (cfg.cost_bps + cfg.slippage_bps) / 1e4


def _daily_factors(returns: Array, weights: Array, cost: float) -> tuple[Array, Array]:
    """Growth factors g*f [..., T] and traded notional / pre-trade equity [..., T].

    returns[..., t] = close_t / close_{t-1} - 1 (index 0 unused: the book starts in cash);
    weights[..., t] = exposure chosen at close t. Works on numpy arrays and torch tensors.
    """
    if isinstance(weights, torch.Tensor):
        prev = torch.nn.functional.pad(weights[..., :-1], (1, 0))
    else:
        prev = np.concatenate([np.zeros_like(weights[..., :1]), weights[..., :-1]], axis=-1)
    held = prev * returns
    held[..., 0] = 0.0
    growth = 1.0 + held
    drift = (prev + held) / growth  # w~: yesterday's exposure after today's move
    sign = (weights >= drift) * 2 - 1  # +1 buy, -1 sell; integer so torch keeps float64
    factor = (1.0 + cost * (sign * drift)) / (1.0 + cost * (sign * weights))
    traded = abs(weights * factor - drift)
    return growth * factor, traded


def backtest_equity(close_returns: Array, positions: Array, cost: float) -> Array:
    """Final equity [B] of position paths [B, T] (0..10) on one series; the batched fast path.

    close_returns [T]: close_t / close_{t-1} - 1 (index 0 unused). cost: fraction per unit of
    turnover (bps / 1e4). Same accounting as run_backtest, numpy or torch (any device).
    """
    factors, _ = _daily_factors(close_returns, positions / 10.0, cost)
    return factors.prod(-1)


def _limit_days(close: np.ndarray, limit_pct: float) -> tuple[np.ndarray, np.ndarray]:
    change = np.concatenate(([0.0], close[1:] / close[:-1] - 1.0))
    return change >= limit_pct - LIMIT_TOL, change <= -limit_pct + LIMIT_TOL


def apply_ashare_rules(positions: np.ndarray, close: np.ndarray, limit_pct: float) -> np.ndarray:
    """Positions after blocking rises on limit-up closes and falls on limit-down closes.

    Only limit days are visited (a few per cent of days), in date order, so each sees its
    predecessor's final position.
    """
    up, down = _limit_days(close, limit_pct)
    out = positions.copy()
    for t in np.flatnonzero(up | down):
        before = out[t - 1] if t > 0 else 0
        out[t] = min(out[t], before) if up[t] else max(out[t], before)
    return out


def _sma_positions(close: pd.Series, fast: int, slow: int) -> pd.Series:
    """10 when the fast SMA of closes up to t is above the slow one, else 0."""
    above = close.rolling(fast, min_periods=fast).mean() > close.rolling(slow, min_periods=slow).mean()
    return above.astype(np.int64) * 10


def forecast_positions(close: pd.Series, predicted: pd.DataFrame) -> pd.Series:
    """clip(round(5 + FORECAST_GAIN * log(pred_1 / close) / trailing daily log vol), 0, 10).

    The volatility uses the last VOL_DAYS log returns up to t; days without a forecast or a
    volatility get the neutral position 5.
    """
    log_ret = np.log(close).diff()
    vol = log_ret.rolling(VOL_DAYS, min_periods=VOL_DAYS).std()
    score = np.log(predicted.iloc[:, 0].reindex(close.index) / close) / vol
    return (5.0 + FORECAST_GAIN * score).round().clip(0, 10).fillna(5.0).astype(np.int64)


def _simulate(close: pd.Series, positions: np.ndarray, cfg: BacktestConfig) -> dict[str, np.ndarray]:
    """Daily arrays of one position path on the backtest days."""
    c = close.to_numpy(dtype=np.float64)
    if cfg.ashare_rules:
        positions = apply_ashare_rules(positions, c, cfg.limit_pct)
    returns = np.concatenate(([0.0], c[1:] / c[:-1] - 1.0))
    weights = positions / 10.0
    factors, traded = _daily_factors(returns, weights, _cost(cfg))
    held = np.concatenate(([0.0], weights[:-1]))
    return {"position": positions, "returns": factors - 1.0, "held": held, "traded": traded,
            "equity": np.cumprod(factors)}


def _metrics(sim: dict[str, np.ndarray], bench: pd.Series, cfg: BacktestConfig, days=slice(None)) -> dict:
    returns = pd.Series(sim["returns"], index=bench.index)
    return compute_metrics(returns[days], bench[days], sim["held"][days], sim["traded"][days], cfg.risk_free)


def _checked_positions(positions: pd.Series, index: pd.DatetimeIndex) -> np.ndarray:
    """Positions on the backtest days, holding the last one over gaps; must be integers 0..10."""
    p = positions.reindex(index).ffill().to_numpy(dtype=np.float64)
    if np.isnan(p).any() or ((p < 0) | (p > 10) | (p != np.round(p))).any():
        raise ValueError("positions must be integers 0..10 on every backtest day")
    return p.astype(np.int64)


def run_backtest(
    close: pd.Series,
    positions: pd.Series,
    cfg: BacktestConfig,
    regimes: pd.Series | None = None,
    predicted: pd.DataFrame | None = None,
) -> BacktestResult:
    """Backtest positions (decided at each close) over cfg.start..cfg.end, next to baselines.

    close: full history (earlier bars feed the SMA, volatility and causal regimes). The backtest
    spans the days of cfg's range that lie within the positions' first and last date. regimes:
    labels (-1..2) or names per date; by default causal_labels of close. predicted: 7 predicted
    closes per date (first column = t+1). per_regime attributes each day's return to the regime
    known when its position was set (the previous close).

    frame (index "date"): close, position (after A-share rules), exposure, regime (name or ""),
    strategy_return, strategy_equity, benchmark_equity (close / first close, no costs),
    drawdown, pred_1..pred_7 (with predicted) and <baseline>_equity (with costs).
    """
    close = close.astype(np.float64).dropna()
    first, last = positions.first_valid_index(), positions.last_valid_index()
    if first is None:
        raise ValueError("no positions to backtest")
    begin, end = max(first, pd.Timestamp(cfg.start or first)), min(last, pd.Timestamp(cfg.end or last))
    days = close.loc[begin:end].index
    if len(days) < 2:
        raise ValueError("the backtest needs at least two days with a close and a position")
    if regimes is None:
        regimes = pd.Series(causal_labels(close.to_numpy()), index=close.index)
    regime = regimes.reindex(days)
    if pd.api.types.is_numeric_dtype(regime):
        regime = pd.Series(regime_names(regime.fillna(-1).to_numpy()), index=days)
    regime = regime.fillna("").astype(str)
    c = close.loc[days]
    bench = c.pct_change().fillna(0.0)
    sim = _simulate(c, _checked_positions(positions, days), cfg)
    frame = pd.DataFrame({
        "close": c, "position": sim["position"], "exposure": sim["position"] / 10.0,
        "regime": regime, "strategy_return": sim["returns"], "strategy_equity": sim["equity"],
        "benchmark_equity": c / c.iloc[0], "drawdown": drawdown(sim["equity"]),
    }, index=days)
    frame.index.name = "date"
    if predicted is not None:
        pred = predicted.iloc[:, :HORIZON].reindex(days)
        frame[[f"pred_{h}" for h in range(1, pred.shape[1] + 1)]] = pred.to_numpy()
    baselines = {}
    for name, path in _baseline_positions(close, days, cfg, predicted).items():
        base = _simulate(c, path, cfg)
        baselines[name] = _metrics(base, bench, cfg)
        frame[f"{name}_equity"] = base["equity"]
    decided = regime.shift(1).fillna("")
    per_regime = {name: _metrics(sim, bench, cfg, (decided == name).to_numpy())
                  for name in sorted(set(decided) - {""})}
    return BacktestResult(frame, _metrics(sim, bench, cfg), baselines, per_regime)


def _baseline_positions(close: pd.Series, days: pd.DatetimeIndex, cfg: BacktestConfig,
                        predicted: pd.DataFrame | None) -> dict[str, np.ndarray]:
    paths = {
        "buy_and_hold": np.full(len(days), 10, dtype=np.int64),
        "constant_5": np.full(len(days), 5, dtype=np.int64),
        "sma_crossover": _sma_positions(close, cfg.sma_fast, cfg.sma_slow).reindex(days).to_numpy(),
    }
    if predicted is not None:
        paths["follow_forecast"] = forecast_positions(close, predicted).reindex(days).to_numpy()
    return paths


def stitch_blocks(
    close: pd.Series,
    pieces: list[tuple[str, str, pd.Series]],
    cfg: BacktestConfig,
    regimes: pd.Series | None = None,
    predicted: pd.DataFrame | None = None,
) -> BacktestResult:
    """One backtest over stitched out-of-sample pieces (start, end, positions), in date order.

    Each piece contributes its positions within [start, end]; pieces must neither overlap nor
    leave trading days between them uncovered.
    """
    parts = [p.loc[pd.Timestamp(s): pd.Timestamp(e)].dropna() for s, e, p in pieces]
    stitched = pd.concat([p for p in parts if len(p)])
    if not stitched.index.is_monotonic_increasing or stitched.index.has_duplicates:
        raise ValueError("walk-forward pieces overlap or are out of order")
    span = close.loc[stitched.index[0]: stitched.index[-1]].index
    missing = span.difference(stitched.index)
    if len(missing):
        raise ValueError(f"walk-forward pieces leave {len(missing)} days uncovered, "
                         f"first {missing[0].date()}")
    window = replace(cfg, start=str(span[0].date()), end=str(span[-1].date()))
    return run_backtest(close, stitched, window, regimes, predicted)


__all__ = [
    "FORECAST_GAIN",
    "BacktestResult",
    "apply_ashare_rules",
    "backtest_equity",
    "forecast_positions",
    "run_backtest",
    "stitch_blocks",
]
