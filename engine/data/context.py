"""Market context beside each instrument's own path, and excess-return targets over a universe.

A stock's move is partly the market's: the price network reads the context index's vol-scaled daily
return and its path (DataConfig.context: the universe's equal-weight index, or an index the user
picks), and can learn the h-day return in excess of the universe's mean (DataConfig.target).
The index on day d reads closes on or before d only; on the union calendar of every instrument, each
instrument's day is aligned to the index value of that day (or the last one before it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.data.features import Z_CLIP, ewma_volatility
from engine.data.io import BarTable, load_bars


@dataclass(eq=False)  # holds arrays
class MarketContext:
    """A context index: its log level and causal EWMA volatility on its own calendar."""

    name: str
    dates: pd.DatetimeIndex  # [D] ascending
    log_level: np.ndarray  # [D] log of the index (its first day 0 for an equal-weight index)
    sigma: np.ndarray  # [D] ewma_volatility of the index (NaN on its first day)

    def aligned(self, dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        """(log level, sigma) [T] at each of `dates`: the value of that day or the last one before it
        (causal), NaN before the index starts."""
        at = self.dates.searchsorted(pd.DatetimeIndex(dates), side="right") - 1
        ok = at >= 0
        pick = lambda a: np.where(ok, a[np.maximum(at, 0)], np.nan)
        return pick(self.log_level), pick(self.sigma)

    def channels(self, dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per instrument day [T]: the index's change since the instrument's previous day in the
        index's sigma of that previous day (clipped like the own change; 0 where unknown), the index
        log level and its sigma (NaN before the index starts): WindowSet makes the path relative."""
        level, sigma = self.aligned(dates)
        prev_sigma = np.r_[np.nan, sigma[:-1]]
        change = np.r_[np.nan, np.diff(level)] / prev_sigma
        return np.nan_to_num(np.clip(change, -Z_CLIP, Z_CLIP), nan=0.0), level, sigma


def _index(name: str, dates: pd.DatetimeIndex, log_level: np.ndarray) -> MarketContext:
    return MarketContext(name, dates, log_level, ewma_volatility(np.exp(log_level)))


def equal_weight_context(tables: list[BarTable]) -> MarketContext:
    """The universe's equal-weight index on the union calendar: each day the mean log return of the
    instruments that traded it (each since its own previous close), compounded. Causal: day d reads
    closes <= d."""
    calendar = pd.DatetimeIndex(sorted(set().union(*(t.frame.index for t in tables))))
    total, count = np.zeros(len(calendar)), np.zeros(len(calendar))
    for t in tables:  # one vectorised scatter per instrument
        close = t.frame["close"].to_numpy(dtype=np.float64)
        r = np.diff(np.log(close))
        rows = calendar.get_indexer(t.frame.index[1:])  # unique within an instrument
        ok = np.isfinite(r)
        total[rows[ok]] += r[ok]
        count[rows[ok]] += 1.0
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return _index("equal_weight", calendar, np.cumsum(mean))


def dataset_context(bars: BarTable) -> MarketContext:
    """An index the user picks (any dataset) as the context, on its own calendar."""
    close = bars.frame["close"].to_numpy(dtype=np.float64)
    ok = np.isfinite(close) & (close > 0)
    return _index(bars.instrument, pd.DatetimeIndex(bars.frame.index[ok]), np.log(close[ok]))


def market_context(context: str, tables: list[BarTable], adjust: bool = True) -> MarketContext | None:
    """DataConfig.context made an index: None for "none", the equal-weight index of `tables`, or the
    dataset named (loaded as the instruments were, adjusted or not)."""
    if context == "none":
        return None
    if context == "equal_weight":
        return equal_weight_context(tables)
    return dataset_context(load_bars(context, adjust=adjust))


def universe_mean_returns(dates: list[pd.DatetimeIndex], targets: list[np.ndarray]
                          ) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """(calendar [D], mean [D, H]): per day of the union calendar, the mean h-day log return over the
    instruments with a realised one that day (targets[k]: [T_k, H] on dates[k], NaN where unknown).
    A target: it reads the same future closes as each instrument's own target, no more."""
    calendar = pd.DatetimeIndex(sorted(set().union(*dates)))
    horizon = targets[0].shape[1]
    total, count = np.zeros((len(calendar), horizon)), np.zeros((len(calendar), horizon))
    for d, y in zip(dates, targets):  # one vectorised scatter per instrument
        rows = calendar.get_indexer(d)  # unique within an instrument
        ok = np.isfinite(y)
        total[rows] += np.where(ok, y, 0.0)
        count[rows] += ok
    return calendar, np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0)


__all__ = ["MarketContext", "dataset_context", "equal_weight_context", "market_context", "universe_mean_returns"]
