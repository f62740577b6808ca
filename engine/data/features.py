"""Daily features of each feature set, each computed from bars up to that day only.

"vol_scaled" (every new run) puts every instrument on one scale: returns and price paths are measured
in units of a causal EWMA volatility, so a 1-sigma day reads the same on an index and on a stock.
"classic" (the 11 features of the original design) stays for runs recorded with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.config import FEATURE_SET, FEATURE_SETS
from engine.data.io import BarTable

LEVEL_WINDOW = 60  # days of the trailing median that volume-like features are measured against
VOL_RATIO_WINDOW = 250  # days of the trailing median volatility that vol_ratio compares today's with
EWMA_LAMBDA = 0.94  # RiskMetrics decay of the daily volatility estimate
SIGMA_FLOOR = 1e-3  # 0.1 % a day: a long suspension must not shrink the unit to nothing
Z_CLIP = 10.0  # vol-scaled inputs beyond 10 sigma (a first day, a reopening) are clipped
_LEVELS = ("volume", "amount", "turnover", "trades")  # features 6..9
_PERCENT = {"turnover": 100.0}  # a fraction (0.0123) is read in percent so log1p acts as a log
# The bar columns each derived feature reads (a bar column reads itself): it is missing when any is.
_DEPENDS: dict[str, tuple[str, ...]] = {
    "change": ("close",), "amplitude": ("high", "low", "close"), "vol_ratio": ("close",),
    "day_sin": (), "day_cos": (), "time": (),
}


def log_returns(close: np.ndarray) -> np.ndarray:
    """[T] log(close_t / close_{t-1}); NaN on the first day."""
    close = np.asarray(close, dtype=np.float64)
    return np.r_[np.nan, np.diff(np.log(close))]


def ewma_volatility(close: np.ndarray, lam: float = EWMA_LAMBDA) -> np.ndarray:
    """[T] sigma_t: RiskMetrics EWMA std of the daily log returns up to AND including day t.

    sigma_t^2 = sum_i w_i r_{t-i}^2 / sum_i w_i with w_i = lam^i over the returns seen so far, so the
    first days are an expanding (weighted) estimate and it becomes the lam-recursion once the history
    is long. Floored at SIGMA_FLOOR; NaN on the first day (no return yet). Causal: sigma_t reads no
    close after day t.
    """
    r2 = pd.Series(log_returns(close) ** 2)
    var = r2.ewm(alpha=1.0 - lam, adjust=True, ignore_na=True).mean().to_numpy()
    return np.maximum(np.sqrt(var), SIGMA_FLOOR)


def daily_features(frame: pd.DataFrame, feature_set: str = FEATURE_SET) -> np.ndarray:
    """[T, n] float64 of `feature_set`. Causal: row t reads bars <= t only. Missing values and absent
    columns give 0.

    Both sets keep log OHLC in columns 0..3; WindowSet.inputs makes them relative to the window's last
    close (and, vol_scaled, divides them by that day's sigma). vol_scaled, with sigma from
    ewma_volatility: change = r_t / sigma_{t-1} (today's move in yesterday's units: a surprise, not a
    tautology), amplitude = log(high/low) / sigma_{t-1}, levels as classic, day of year as sin and cos,
    vol_ratio = log(sigma_t / trailing VOL_RATIO_WINDOW-day median sigma) (the vol regime the unit
    hides). classic: simple change and (high-low)/prev close, sin of the day of year.
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; choose one of {sorted(FEATURE_SETS)}")
    o, h, low, c = (frame[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close"))
    prev = np.r_[np.nan, c[:-1]]
    out = np.empty((len(frame), len(FEATURE_SETS[feature_set])))
    out[:, :4] = np.log(np.column_stack([o, h, low, c]))
    for j, name in enumerate(_LEVELS, start=6):
        out[:, j] = _relative_level(frame[name] * _PERCENT.get(name, 1.0))
    angle = 2.0 * np.pi * frame.index.day_of_year.to_numpy() / 365.25
    if feature_set == "classic":
        out[:, 4] = c / prev - 1.0
        out[:, 5] = (h - low) / prev
        out[:, 10] = np.sin(angle)
    else:
        sigma = ewma_volatility(c)
        sigma_prev = np.r_[np.nan, sigma[:-1]]
        out[:, 4] = np.clip(log_returns(c) / sigma_prev, -Z_CLIP, Z_CLIP)
        out[:, 5] = np.clip(np.log(h / low) / sigma_prev, 0.0, Z_CLIP)
        out[:, 10], out[:, 11] = np.sin(angle), np.cos(angle)
        typical = pd.Series(sigma).rolling(VOL_RATIO_WINDOW, min_periods=1).median().to_numpy()
        out[:, 12] = np.log(sigma / typical)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _relative_level(values: pd.Series) -> np.ndarray:
    """log1p(x_t) - log1p(median of x over the trailing LEVEL_WINDOW days ending at t). A column the file
    lacks (all NaN: a close-only universe's volume) skips the rolling median, the dearest step of a window
    index over thousands of instruments."""
    if values.isna().all():
        return np.full(len(values), np.nan)
    median = values.rolling(LEVEL_WINDOW, min_periods=1).median()
    return (np.log1p(values) - np.log1p(median)).to_numpy(dtype=np.float64)


def feature_mask(bars: BarTable, feature_set: str = FEATURE_SET) -> np.ndarray:
    """[n] float32: 1 where the feature comes from the file or an honest derivation, 0 where the file
    lacks it everywhere (its value is then 0 and the network adds a learned "missing" embedding)."""
    missing = set(bars.missing)
    return np.array([0.0 if missing & set(_DEPENDS.get(name, (name,))) else 1.0
                     for name in FEATURE_SETS[feature_set]], dtype=np.float32)
