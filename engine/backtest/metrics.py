"""Performance metrics of a daily return series, as plain floats (JSON-ready).

Conventions: 252 trading days a year; the daily risk-free rate is `risk_free / 252`; standard
deviations use ddof=1 (as empyrical / quantstats); drawdowns are measured from the starting
capital 1.0 too. A ratio that is undefined (no variation, no drawdown, no benchmark, no
invested day) is None rather than a made-up number; nothing here raises on empty or flat input.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

DAYS = 252

METRIC_KEYS = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
    "max_drawdown_start", "max_drawdown_end", "information_ratio", "win_rate", "turnover",
    "exposure",
)


def drawdown(equity: np.ndarray) -> np.ndarray:
    """equity / running peak - 1, the peak including the starting capital 1.0."""
    return equity / np.maximum(np.maximum.accumulate(equity), 1.0) - 1.0


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 and math.isfinite(den) else None


def _annual_ratio(excess: np.ndarray) -> float | None:
    """Annualised mean / std (Sharpe, information ratio); None when it has no spread."""
    if excess.size < 2:
        return None
    return _ratio(excess.mean() * math.sqrt(DAYS), excess.std(ddof=1))


def _drawdown_span(equity: np.ndarray, dates: pd.Index | None) -> tuple[float, str | None, str | None]:
    dd = drawdown(equity)
    trough = int(np.argmin(dd))
    if dd[trough] >= 0.0:
        return 0.0, None, None
    prior = np.concatenate(([1.0], equity[: trough + 1]))  # index 0 is the starting capital
    peak = max(int(prior.size - 1 - np.argmax(prior[::-1])) - 1, 0)  # last time at the peak
    name = (lambda i: pd.Timestamp(dates[i]).strftime("%Y-%m-%d")) if dates is not None else (lambda i: None)
    return float(dd[trough]), name(peak), name(trough)


def _values(x: pd.Series | np.ndarray | None, keep: np.ndarray) -> np.ndarray | None:
    if x is None:
        return None
    return np.nan_to_num(np.asarray(x, dtype=np.float64)[keep])


def compute_metrics(
    strategy_returns: pd.Series | np.ndarray,
    benchmark_returns: pd.Series | np.ndarray | None = None,
    exposure: pd.Series | np.ndarray | None = None,
    turnover: pd.Series | np.ndarray | None = None,
    risk_free: float = 0.0,
) -> dict:
    """Metrics of daily strategy returns (all arrays aligned day by day; NaN days are dropped).

    exposure[t]: fraction invested while earning strategy_returns[t] (so win_rate = share of
    invested days, exposure > 0, with a positive return; without exposure, days with a nonzero
    return count as invested). turnover[t]: traded notional / equity on day t; the metric is its
    annualised sum. max_drawdown is a negative fraction, its start the peak and end the trough.
    """
    raw = np.asarray(strategy_returns, dtype=np.float64)
    keep = np.isfinite(raw)
    r = raw[keep]
    dates = strategy_returns.index[keep] if isinstance(strategy_returns, pd.Series) else None
    bench, expo, turn = (_values(x, keep) for x in (benchmark_returns, exposure, turnover))
    if r.size == 0:
        return {k: (None if k not in ("total_return", "cagr", "volatility", "max_drawdown") else 0.0)
                for k in METRIC_KEYS}
    equity = np.cumprod(1.0 + r)
    total = float(equity[-1] - 1.0)
    cagr = float(equity[-1] ** (DAYS / r.size) - 1.0) if equity[-1] > 0 else -1.0
    excess = r - risk_free / DAYS
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)) * DAYS)
    max_dd, dd_start, dd_end = _drawdown_span(equity, dates)
    invested = expo > 0 if expo is not None else r != 0
    return {
        "total_return": total,
        "cagr": cagr,
        "volatility": float(r.std(ddof=1) * math.sqrt(DAYS)) if r.size > 1 else 0.0,
        "sharpe": _annual_ratio(excess),
        "sortino": _ratio(float(excess.mean()) * DAYS, downside),
        "calmar": _ratio(cagr, -max_dd),
        "max_drawdown": max_dd,
        "max_drawdown_start": dd_start,
        "max_drawdown_end": dd_end,
        "information_ratio": _annual_ratio(r - bench) if bench is not None else None,
        "win_rate": float(np.mean(r[invested] > 0)) if invested.any() else None,
        "turnover": float(turn.sum() * DAYS / r.size) if turn is not None else None,
        "exposure": float(expo.mean()) if expo is not None else None,
    }


__all__ = ["DAYS", "METRIC_KEYS", "compute_metrics", "drawdown"]
