"""Volatility baselines a distributional forecast must beat: causal h-day log-return quantiles.

Each function takes one instrument's closes [T] and forecast days (indices into them) and returns
quantiles [n_days, H, Q] of log(close_{t+h} / close_t) for h = 1..H, using only closes up to t:

- climatology: expanding empirical quantiles of every past h-day log return (the reference of
  pinball skill; what "no model" knows).
- ewma: RiskMetrics, sigma^2_t = lambda sigma^2_{t-1} + (1 - lambda) r_t^2 with lambda 0.94; zero
  mean, normal quantiles of sigma sqrt(h).
- garch_t: GARCH(1,1) with Student-t innovations (the `arch` package, the field's standard),
  refit once a year on every return before 1 January, then filtered forward with the fixed
  parameters; h-day variance = sum of the 1..h-step forecasts, quantiles of the standardized t.

NaN where a baseline does not yet have enough history. Everything is vectorised numpy except the
yearly refit loop.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import signal, stats

from engine.config import HORIZON

RISKMETRICS_LAMBDA = 0.94
EWMA_WARMUP = 20  # returns averaged into the first variance (earlier days: NaN)
CLIMATOLOGY_MIN = 60  # past h-day returns an empirical quantile needs
GARCH_MIN = 500  # daily returns before a year's refit date for a GARCH fit
TRADING_DAYS = 252


def log_returns(close: np.ndarray) -> np.ndarray:
    """[T] r_t = log(close_t / close_{t-1}); NaN at t = 0."""
    c = np.asarray(close, dtype=np.float64)
    return np.concatenate([[np.nan], np.diff(np.log(c))])


def ewma_sigma(close: np.ndarray, lam: float = RISKMETRICS_LAMBDA, warmup: int = EWMA_WARMUP) -> np.ndarray:
    """[T] RiskMetrics daily volatility known at each close (the next day's forecast): seeded with
    the mean squared return of days 1..warmup, NaN before day warmup."""
    r2 = log_returns(close)[1:] ** 2
    sigma2 = np.full(len(r2) + 1, np.nan)
    if len(r2) < warmup:
        return sigma2
    seed = r2[:warmup].mean()
    # the recursion as a linear filter started from the seed: no Python loop over days
    tail, _ = signal.lfilter([1.0 - lam], [1.0, -lam], r2[warmup:], zi=[lam * seed])
    sigma2[warmup] = seed
    sigma2[warmup + 1:] = tail
    return np.sqrt(sigma2)


def _normal_quantiles(sigma: np.ndarray, levels: Sequence[float], horizon: int) -> np.ndarray:
    """[n, H, Q] zero-mean normal quantiles of sigma sqrt(h)."""
    scale = sigma[:, None] * np.sqrt(np.arange(1, horizon + 1))[None, :]
    return scale[..., None] * stats.norm.ppf(np.asarray(levels, dtype=np.float64))


def ewma(close: np.ndarray, days: np.ndarray, levels: Sequence[float], horizon: int = HORIZON,
         lam: float = RISKMETRICS_LAMBDA) -> np.ndarray:
    """[n, H, Q] RiskMetrics quantiles of the h-day log return from each forecast day."""
    return _normal_quantiles(ewma_sigma(close, lam)[np.asarray(days)], levels, horizon)


def climatology(close: np.ndarray, days: np.ndarray, levels: Sequence[float], horizon: int = HORIZON,
                min_count: int = CLIMATOLOGY_MIN) -> np.ndarray:
    """[n, H, Q] empirical quantiles (linear interpolation) of the h-day log returns realised by each
    forecast day: log(close_s / close_{s-h}) for s <= t. NaN with fewer than min_count of them."""
    logc = np.log(np.asarray(close, dtype=np.float64))
    days = np.asarray(days)
    out = np.full((len(days), horizon, len(levels)), np.nan)
    for h in range(1, horizon + 1):  # a handful of horizons and levels; pandas' expanding window runs in C
        past = pd.Series(np.concatenate([np.full(h, np.nan), logc[h:] - logc[:-h]]))
        expanding = past.expanding(min_periods=min_count)
        for k, q in enumerate(levels):
            out[:, h - 1, k] = expanding.quantile(q).to_numpy()[days]
    return out


def garch_t(close: np.ndarray, dates: pd.DatetimeIndex, days: np.ndarray, levels: Sequence[float],
            horizon: int = HORIZON, min_count: int = GARCH_MIN) -> np.ndarray:
    """[n, H, Q] GARCH(1,1)-t quantiles: one fit per calendar year of forecast days on the returns
    before 1 January (expanding), filtered with those fixed parameters through that year's days.
    A year with fewer than min_count earlier returns (or a failed fit) is NaN."""
    from arch import arch_model

    r = log_returns(close)[1:] * 100.0  # percent: the scale arch's optimiser expects
    days = np.asarray(days)
    out = np.full((len(days), horizon, len(levels)), np.nan)
    for year in sorted(set(dates[days].year)):
        first = int(dates.searchsorted(pd.Timestamp(year=year, month=1, day=1)))  # refit date
        last = int(dates.searchsorted(pd.Timestamp(year=year + 1, month=1, day=1))) - 1
        if first - 1 < min_count:
            continue
        with warnings.catch_warnings():  # convergence notes are the optimiser's business, not the user's
            warnings.simplefilter("ignore")
            fitted = arch_model(r[:first - 1], mean="Constant", vol="GARCH", p=1, q=1, dist="t").fit(
                disp="off", show_warning=False)
            if fitted.convergence_flag != 0:
                continue
            # returns through the year's last close; r[i] is the return into close i + 1
            filtered = arch_model(r[:last], mean="Constant", vol="GARCH", p=1, q=1, dist="t").fix(fitted.params)
            rows = (days >= first) & (days <= last)
            fc = filtered.forecast(horizon=horizon, start=int(days[rows][0]) - 1, reindex=False)
        at = days[rows] - 1 - (int(days[rows][0]) - 1)  # forecast rows of these days
        mean = np.cumsum(fc.mean.to_numpy()[at], axis=1)  # [n, H] h-day mean, percent
        var = np.cumsum(fc.variance.to_numpy()[at], axis=1)
        nu = float(fitted.params["nu"])
        z = stats.t.ppf(np.asarray(levels, dtype=np.float64), nu) * np.sqrt((nu - 2.0) / nu)
        out[rows] = (mean[..., None] + np.sqrt(var)[..., None] * z) / 100.0
    return out


def baseline_quantiles(close: np.ndarray, dates: pd.DatetimeIndex, days: np.ndarray,
                       levels: Sequence[float], horizon: int = HORIZON) -> dict[str, np.ndarray]:
    """{"climatology", "ewma", "garch"}: each [n, H, Q] on the same forecast days."""
    return {"climatology": climatology(close, days, levels, horizon),
            "ewma": ewma(close, days, levels, horizon),
            "garch": garch_t(close, dates, days, levels, horizon)}


__all__ = [
    "RISKMETRICS_LAMBDA",
    "TRADING_DAYS",
    "baseline_quantiles",
    "climatology",
    "ewma",
    "ewma_sigma",
    "garch_t",
    "log_returns",
]
