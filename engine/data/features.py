"""Daily features of each feature set, each computed from bars up to that day only.

"vol_scaled" (every new run) puts every instrument on one scale: returns and price paths are measured
in units of a causal EWMA volatility, so a 1-sigma day reads the same on an index and on a stock.
"classic" (the 11 features of the original design) stays for runs recorded with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import rank_filter

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


def daily_features(frame: pd.DataFrame, feature_set: str = FEATURE_SET, sigma: np.ndarray | None = None
                   ) -> np.ndarray:
    """[T, n] float64 of `feature_set`. Causal: row t reads bars <= t only. Missing values and absent
    columns give 0. `sigma`: ewma_volatility of the close when the caller has it already (build_windows).

    Both sets keep log OHLC in columns 0..3; WindowSet.inputs makes them relative to the window's last
    close (and, vol_scaled, divides them by that day's sigma). vol_scaled, with sigma from
    ewma_volatility: change = r_t / sigma_{t-1} (today's move in yesterday's units: a surprise, not a
    tautology), amplitude = log(high/low) / sigma_{t-1}, levels as classic, day of year as sin and cos,
    vol_ratio = log(sigma_t / trailing VOL_RATIO_WINDOW-day median sigma) (the vol regime the unit
    hides). classic: simple change and (high-low)/prev close, sin of the day of year.
    A column the frame lacks everywhere (a close-only universe member's OHLV) is not computed: its
    features would be NaN, so 0, on every day.
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; choose one of {sorted(FEATURE_SETS)}")
    names = ("open", "high", "low", "close", *_LEVELS)
    at = [frame.columns.get_loc(k) for k in names]
    values = np.ascontiguousarray(frame.to_numpy(dtype=np.float64).T)[at]  # one copy, not a lookup per column
    bars = dict(zip(names, values))
    absent = {k for k, gone in zip(names, np.isnan(values).all(axis=1)) if gone}
    h, low, c = bars["high"], bars["low"], bars["close"]
    prev = np.r_[np.nan, c[:-1]]
    cols: dict[int, np.ndarray] = {}  # the columns computed; the rest stay 0
    for j, name in enumerate(("open", "high", "low", "close")):
        if name not in absent:
            cols[j] = np.log(bars[name])
    for j, name in enumerate(_LEVELS, start=6):
        if name not in absent:
            cols[j] = _relative_level(bars[name] * _PERCENT.get(name, 1.0))
    with_range = not absent & {"high", "low"}
    angle = 2.0 * np.pi * frame.index.day_of_year.to_numpy() / 365.25
    if feature_set == "classic":
        cols[4] = c / prev - 1.0
        if with_range:
            cols[5] = (h - low) / prev
        cols[10] = np.sin(angle)
    else:
        sigma = ewma_volatility(c) if sigma is None else sigma
        sigma_prev = np.r_[np.nan, sigma[:-1]]
        cols[4] = np.clip(log_returns(c) / sigma_prev, -Z_CLIP, Z_CLIP)
        if with_range:
            cols[5] = np.clip(np.log(h / low) / sigma_prev, 0.0, Z_CLIP)
        cols[10], cols[11] = np.sin(angle), np.cos(angle)
        cols[12] = np.log(sigma / trailing_median(sigma, VOL_RATIO_WINDOW))
    out = np.zeros((len(frame), len(FEATURE_SETS[feature_set])))
    for j, col in cols.items():
        out[:, j] = np.nan_to_num(col, nan=0.0, posinf=0.0, neginf=0.0, copy=False)
    return out


def trailing_median(values: np.ndarray, window: int) -> np.ndarray:
    """[T] pd.Series(values).rolling(window, min_periods=1).median(), bit for bit, in two scipy rank
    filters (a few times faster than pandas' skiplist, the dearest step of a universe's window index).

    Valid for values that are NaN only in a leading run (sigma's first day): they are dropped and
    window-1 pads, alternately +inf and -inf going back, put in front, so a window holding k < window
    values has floor(p/2) -inf and ceil(p/2) +inf of its p pads and the median of its k values sits at
    rank window//2 - 1 (k odd, window even), window//2 (k odd, window odd) or between the two (k even),
    exactly as with k = window. Anything else (a gap inside, an inf) takes the pandas route.
    """
    values = np.asarray(values, dtype=np.float64)
    lead = int(np.argmax(~np.isnan(values))) if len(values) and not np.isnan(values).all() else len(values)
    live = values[lead:]
    if window < 2 or not np.isfinite(live).all():
        return pd.Series(values).rolling(window, min_periods=1).median().to_numpy()
    pads = np.where(np.arange(window - 1, 0, -1) % 2, np.inf, -np.inf)  # pad j before the first: +inf if j odd
    padded = np.r_[pads, live]
    ranked = [rank_filter(padded, r, size=window, origin=(window - 1) // 2)[window - 1:]
              for r in (window // 2 - 1, window // 2)]
    count = np.minimum(np.arange(1, len(live) + 1), window)  # values in each window
    odd = ranked[window % 2]  # k odd: the one middle value
    out = np.full(len(values), np.nan)
    out[lead:] = np.where(count % 2 == 1, odd, (ranked[0] + ranked[1]) / 2)
    return out


def _relative_level(values: np.ndarray) -> np.ndarray:
    """log1p(x_t) - log1p(median of x over the trailing LEVEL_WINDOW days ending at t)."""
    return np.log1p(values) - np.log1p(trailing_median(values, LEVEL_WINDOW))


def feature_mask(bars: BarTable, feature_set: str = FEATURE_SET) -> np.ndarray:
    """[n] float32: 1 where the feature comes from the file or an honest derivation, 0 where the file
    lacks it everywhere (its value is then 0 and the network adds a learned "missing" embedding)."""
    missing = set(bars.missing)
    return np.array([0.0 if missing & set(_DEPENDS.get(name, (name,))) else 1.0
                     for name in FEATURE_SETS[feature_set]], dtype=np.float32)
