"""The 11 daily features of the original design, each computed from bars up to that day only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.config import FEATURE_NAMES, N_FEATURES
from engine.data.io import BarTable

LEVEL_WINDOW = 60  # days of the trailing median that volume-like features are measured against
_LEVELS = ("volume", "amount", "turnover", "trades")  # features 6..9
_PERCENT = {"turnover": 100.0}  # a fraction (0.0123) is read in percent so log1p acts as a log


def daily_features(frame: pd.DataFrame) -> np.ndarray:
    """[T, 11] float64: log OHLC (made relative per window), change, amplitude, levels, time.

    Causal: row t reads bars <= t only. Missing values and absent columns give 0.
    """
    o, h, low, c = (frame[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close"))
    prev = np.r_[np.nan, c[:-1]]
    out = np.empty((len(frame), N_FEATURES))
    out[:, :4] = np.log(np.column_stack([o, h, low, c]))
    out[:, 4] = c / prev - 1.0
    out[:, 5] = (h - low) / prev
    for j, name in enumerate(_LEVELS, start=6):
        out[:, j] = _relative_level(frame[name] * _PERCENT.get(name, 1.0))
    out[:, 10] = np.sin(2.0 * np.pi * frame.index.day_of_year.to_numpy() / 365.25)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _relative_level(values: pd.Series) -> np.ndarray:
    """log1p(x_t) - log1p(median of x over the trailing LEVEL_WINDOW days ending at t)."""
    median = values.rolling(LEVEL_WINDOW, min_periods=1).median()
    return (np.log1p(values) - np.log1p(median)).to_numpy(dtype=np.float64)


def feature_mask(bars: BarTable) -> np.ndarray:
    """[11] float32: 1 where the feature comes from the file or an honest derivation, 0 if missing."""
    mask = np.ones(N_FEATURES, dtype=np.float32)
    for name in bars.missing:
        if name in FEATURE_NAMES:
            mask[FEATURE_NAMES.index(name)] = 0.0
    return mask
