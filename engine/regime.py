"""Market regimes (bear / sideways / bull) by a majority vote of three voters on daily returns.

Two uses, kept apart: `hindsight_labels` labels whole training sequences for the strategy loss
(it sees the period it labels); `causal_labels` labels each day from closes up to that day only,
for what the user sees and for backtests. `vote` is pure: no state survives between calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from numpy.lib.stride_tricks import sliding_window_view

BEAR, SIDEWAYS, BULL = 0, 1, 2
REGIME_NAMES = ("bear", "sideways", "bull")

Array = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class RegimeThresholds:
    """Voter thresholds, in units of the period's own daily volatility so they transfer across
    instruments (the original fixed 0.8 %/day labelled almost everything sideways)."""

    simple_t: float = 0.5  # |mean| / (std / sqrt(L)) above this: trending
    short_days: int = 5  # technical voter: mean of the last short_days returns ...
    technical_margin: float = 0.15  # ... vs the period mean, margin in daily stds
    adaptive_low: float = 0.35  # adaptive voter: quantiles of past period means
    adaptive_high: float = 0.65
    adaptive_window: int = 250  # past periods the causal adaptive voter looks at
    adaptive_min_periods: int = 60  # fewer past periods: no causal label (-1)


DEFAULT_THRESHOLDS = RegimeThresholds()


def _votes(x: Array, low: Array | float, high: Array | float) -> Array:
    """+1 above high, -1 below low, 0 between (or where a bound is NaN)."""
    return (x > high) * 1 - (x < low) * 1


VOTERS = ("simple", "technical", "adaptive")


def voters(
    returns: Array,
    thresholds: RegimeThresholds = DEFAULT_THRESHOLDS,
    bounds: tuple[Array, Array] | None = None,
) -> dict[str, tuple[Array, Array, Array, Array]]:
    """Each voter's (statistic, low, high, vote) over periods returns [B, L], vote +1 / 0 / -1.

    simple: the period's mean return against +-simple_t standard errors; technical: the last
    `short_days` mean minus the period mean against +-technical_margin daily stds (momentum building
    or fading); adaptive: the period mean against `bounds`, the low/high quantiles of past period
    means ([B] each; None: this batch's quantiles, hindsight use only).
    """
    length = returns.shape[-1]
    mean = returns.mean(-1)
    std = ((returns - mean[..., None]) ** 2).mean(-1) ** 0.5
    short = returns[..., -thresholds.short_days:].mean(-1)
    if bounds is None:
        bounds = _batch_bounds(mean, thresholds)
    margin = thresholds.simple_t * std / length**0.5
    tech = thresholds.technical_margin * std
    parts = {"simple": (mean, -margin, margin), "technical": (short - mean, -tech, tech),
             "adaptive": (mean, bounds[0], bounds[1])}
    return {name: (x, low, high, _votes(x, low, high)) for name, (x, low, high) in parts.items()}


def vote(
    returns: Array,
    thresholds: RegimeThresholds = DEFAULT_THRESHOLDS,
    bounds: tuple[Array, Array] | None = None,
) -> Array:
    """Labels [B] of periods returns [B, L] (daily simple returns), numpy or torch alike.

    The three `voters` vote; majority wins; when all three differ the label is sideways.
    numpy gives int8, torch gives int64.
    """
    votes = [v[3] for v in voters(returns, thresholds, bounds).values()]
    bull = sum((v == 1) * 1 for v in votes) >= 2
    bear = sum((v == -1) * 1 for v in votes) >= 2
    labels = SIDEWAYS + bull * 1 - bear * 1
    return labels.to(torch.int64) if isinstance(labels, torch.Tensor) else labels.astype(np.int8)


def _batch_bounds(mean: Array, thresholds: RegimeThresholds) -> tuple[Array, Array]:
    qs = [thresholds.adaptive_low, thresholds.adaptive_high]
    if isinstance(mean, torch.Tensor):
        low, high = torch.quantile(mean, torch.tensor(qs, dtype=mean.dtype, device=mean.device))
        return low, high
    low, high = np.quantile(mean, qs)
    return low, high


def hindsight_labels(
    returns: Array,
    thresholds: RegimeThresholds = DEFAULT_THRESHOLDS,
    bounds: tuple[Array, Array] | None = None,
) -> Array:
    """Labels [B] of whole sequences [B, L] for the training loss (sees the period it labels).

    The adaptive voter compares each period with the batch's distribution unless `bounds`
    (e.g. quantiles of the training set's period means) are given; a batch of one gives it no
    distribution, so it abstains (votes sideways).
    """
    return vote(returns, thresholds, bounds)


def causal_periods(
    close: np.ndarray, lookback: int = 20, thresholds: RegimeThresholds = DEFAULT_THRESHOLDS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What day t votes on, for t >= lookback (row t - lookback): its trailing `lookback` returns
    [T - lookback, lookback] and the adaptive bounds (low, high), rolling quantiles of the period
    means of earlier days (strictly before t), so no future bar can change a vote."""
    close = np.asarray(close, dtype=np.float64)
    returns = close[1:] / close[:-1] - 1.0
    # row j of periods ends at day j + lookback
    periods = sliding_window_view(returns, lookback)
    means = pd.Series(periods.mean(-1))
    rolling = means.rolling(thresholds.adaptive_window, min_periods=thresholds.adaptive_min_periods)
    low = rolling.quantile(thresholds.adaptive_low).shift(1).to_numpy()
    high = rolling.quantile(thresholds.adaptive_high).shift(1).to_numpy()
    return periods, low, high


def causal_labels(
    close: np.ndarray, lookback: int = 20, thresholds: RegimeThresholds = DEFAULT_THRESHOLDS
) -> np.ndarray:
    """Label [T] int8 of each day t from closes <= t only (causal_periods); -1 where history is
    too short."""
    out = np.full(len(close), -1, dtype=np.int8)
    if len(close) <= lookback:
        return out
    periods, low, high = causal_periods(close, lookback, thresholds)
    labels = vote(periods, thresholds, (low, high))
    known = np.isfinite(periods).all(-1) & np.isfinite(low) & np.isfinite(high)
    out[lookback:] = np.where(known, labels, -1)
    return out


def regime_names(labels: np.ndarray) -> np.ndarray:
    """Names of labels (object array); "" where the label is -1 (unknown)."""
    names = np.array(("", *REGIME_NAMES), dtype=object)
    return names[np.asarray(labels, dtype=np.int64) + 1]


__all__ = [
    "BEAR",
    "BULL",
    "DEFAULT_THRESHOLDS",
    "REGIME_NAMES",
    "SIDEWAYS",
    "VOTERS",
    "RegimeThresholds",
    "causal_labels",
    "causal_periods",
    "hindsight_labels",
    "regime_names",
    "vote",
    "voters",
]
