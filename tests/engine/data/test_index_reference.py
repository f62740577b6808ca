"""The fast window index (issue 14 item 5) gives what the straightforward pandas code gave, bit for bit, on
the bundled series and on close-only members of the us12 universe: features, window inputs, sigma, targets,
next-day returns, the pooled calendar and the calendar split. The references below are that code, kept here
as the oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.config import FEATURE_SETS
from engine.data import PooledWindows, build_windows, daily_features, load_bars
from engine.data.context import market_context
from engine.data.features import EWMA_LAMBDA, SIGMA_FLOOR, VOL_RATIO_WINDOW, Z_CLIP, trailing_median
from engine.data.splits import CutDates, calendar_split, pooled_calendar

SERIES = ("spx", "sse", "us12:AAPL", "us12:AMD")  # OHLCV, OHLCV, then close-only members of a wide table


def reference_sigma(close: np.ndarray) -> np.ndarray:
    r2 = pd.Series(np.r_[np.nan, np.diff(np.log(close))] ** 2)
    var = r2.ewm(alpha=1.0 - EWMA_LAMBDA, adjust=True, ignore_na=True).mean().to_numpy()
    return np.maximum(np.sqrt(var), SIGMA_FLOOR)


def reference_features(frame: pd.DataFrame, feature_set: str) -> np.ndarray:
    """daily_features as it was: pandas rolling medians, every column computed, NaN made 0 at the end."""
    o, h, low, c = (frame[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close"))
    prev = np.r_[np.nan, c[:-1]]
    out = np.empty((len(frame), len(FEATURE_SETS[feature_set])))
    out[:, :4] = np.log(np.column_stack([o, h, low, c]))
    for j, name in enumerate(("volume", "amount", "turnover", "trades"), start=6):
        values = frame[name] * (100.0 if name == "turnover" else 1.0)
        median = values.rolling(60, min_periods=1).median()
        out[:, j] = (np.log1p(values) - np.log1p(median)).to_numpy(dtype=np.float64)
    angle = 2.0 * np.pi * frame.index.day_of_year.to_numpy() / 365.25
    if feature_set == "classic":
        out[:, 4], out[:, 5], out[:, 10] = c / prev - 1.0, (h - low) / prev, np.sin(angle)
    else:
        sigma = reference_sigma(c)
        sigma_prev = np.r_[np.nan, sigma[:-1]]
        out[:, 4] = np.clip(np.r_[np.nan, np.diff(np.log(c))] / sigma_prev, -Z_CLIP, Z_CLIP)
        out[:, 5] = np.clip(np.log(h / low) / sigma_prev, 0.0, Z_CLIP)
        out[:, 10], out[:, 11] = np.sin(angle), np.cos(angle)
        out[:, 12] = np.log(sigma / pd.Series(sigma).rolling(VOL_RATIO_WINDOW, min_periods=1).median().to_numpy())
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def reference_inputs(ws, daily: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """WindowSet.inputs as it was: every channel kept at float32, masked ones multiplied by 0, one window at a
    time from the float64 features."""
    log_close = np.log(ws.close)
    channels = daily.astype(np.float32)
    channels[:, :4] = daily[:, :4] - log_close[:, None]
    if ws.context is not None:
        change, level, sigma_i = ws.context.channels(ws.dates)
        channels = np.column_stack([channels, change, np.zeros(len(change))]).astype(np.float32)
    channels *= ws.mask
    out = []
    for e in ends:
        x = channels[e - ws.window + 1:e + 1].copy()
        path = log_close[e - ws.window + 1:e + 1] - log_close[e]
        x[:, :4] += path.astype(np.float32)[:, None] * ws.mask[:4]
        if ws.feature_set != "classic":
            x[:, :4] /= np.float32(ws.sigma[e])
        if ws.context is not None:
            ctx = (level[e - ws.window + 1:e + 1] - level[e]) / sigma_i[e]
            x[:, -1] = np.nan_to_num(ctx, nan=0.0, posinf=0.0, neginf=0.0) * ws.mask[-1]
        out.append(x)
    return np.stack(out)


@pytest.fixture(scope="module")
def tables():
    return {name: load_bars(name) for name in SERIES}


def test_trailing_median_is_pandas_rolling_median_bit_for_bit():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n, window = int(rng.integers(0, 600)), int(rng.integers(2, 300))
        values = rng.standard_normal(n)
        if trial % 3 == 0:
            values = np.round(values, 1)  # ties
        values[:int(rng.integers(0, 4))] = np.nan  # a leading gap, as sigma's first day
        if trial % 7 == 0 and n > 10:
            values[n // 2] = np.nan  # a gap inside: the pandas route
        expected = pd.Series(values).rolling(window, min_periods=1).median().to_numpy()
        np.testing.assert_array_equal(trailing_median(values, window), expected)


@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
def test_daily_features_equal_the_pandas_reference(tables, feature_set):
    for name, bars in tables.items():
        np.testing.assert_array_equal(daily_features(bars.frame, feature_set),
                                      reference_features(bars.frame, feature_set), err_msg=name)


@pytest.mark.parametrize("feature_set", sorted(FEATURE_SETS))
def test_window_inputs_targets_and_returns_equal_the_reference(tables, feature_set):
    for name, bars in tables.items():
        ws = build_windows(bars, feature_set=feature_set)
        ends = np.r_[ws.ends[:3], ws.ends[len(ws.ends) // 2::97], ws.ends[-3:]]
        daily = reference_features(bars.frame, feature_set)
        np.testing.assert_array_equal(ws.inputs(ends), reference_inputs(ws, daily, ends), err_msg=name)
        close = bars.frame["close"].to_numpy()
        np.testing.assert_array_equal(ws.sigma, reference_sigma(close), err_msg=name)
        later = np.log(close[np.minimum(ends[:, None] + np.arange(1, ws.horizon + 1), len(close) - 1)])
        inside = ends[:, None] + np.arange(1, ws.horizon + 1) < len(close)
        np.testing.assert_array_equal(ws.targets(ends), np.where(inside, later - np.log(close[ends, None]), np.nan))
        days = np.arange(len(close))
        np.testing.assert_array_equal(ws.next_returns(days), np.r_[close[1:] / close[:-1] - 1.0, np.nan])


def test_a_close_only_member_keeps_only_its_live_channels_and_context_matches(tables):
    members = [tables["us12:AAPL"], tables["us12:AMD"]]
    ws = build_windows(members[0])
    assert ws.n_features == 13 and ws.daily.shape == (len(ws), 4)  # change, day sin/cos, vol_ratio
    assert ws.daily.dtype == np.float32
    context = market_context("equal_weight", members)
    for bars in members:
        ws = build_windows(bars, context=context)
        ends = ws.ends[::151]
        daily = reference_features(bars.frame, "vol_scaled")
        np.testing.assert_array_equal(ws.inputs(ends), reference_inputs(ws, daily, ends))


def test_pooled_calendar_items_and_calendar_split_equal_the_reference(tables):
    sets = [build_windows(bars) for bars in tables.values()]
    expected = np.unique(np.concatenate([ws.dates.to_numpy(dtype="datetime64[ns]") for ws in sets]))
    np.testing.assert_array_equal(pooled_calendar(sets).to_numpy(), expected)
    cuts = CutDates(train_end="2012-06-29", val_end="2017-03-31", test_start="2017-05-01")
    for ws in sets:
        split = calendar_split(ws, cuts, 7)
        ends = ws.ends[ws.has_targets(ws.ends)]
        n_train = ws.dates.searchsorted(pd.Timestamp(cuts.train_end), side="right")
        n_val = ws.dates.searchsorted(pd.Timestamp(cuts.val_end), side="right")
        test_from = max(n_val + 6, ws.dates.searchsorted(pd.Timestamp(cuts.test_start), side="left"))
        np.testing.assert_array_equal(split.train, ends[ends + 7 < n_train])
        np.testing.assert_array_equal(split.val, ends[(ends >= n_train + 6) & (ends + 7 < n_val)])
        np.testing.assert_array_equal(split.test, ends[ends >= test_from])
    parts = [ws.ends[::50] for ws in sets] + [np.empty(0, np.int64)]
    expected_items = np.concatenate([np.column_stack([np.full(len(e), k), e]) for k, e in enumerate(parts)])
    np.testing.assert_array_equal(PooledWindows.pairs(parts), expected_items)
    assert PooledWindows.pairs(parts).dtype == np.int64
