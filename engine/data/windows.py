"""Training windows, targets and leak-free chronological splits, gathered by index, never copied per day.

A window ending at day e reads days e-window+1..e; its targets are the next `horizon` closes as
log(close_{e+h} / close_e); a strategy position fixed at close t earns close t -> close t+1.
With the "vol_scaled" feature set the network learns z_{e,h} = log(close_{e+h} / close_e) / (sigma_e sqrt h)
(sigma: the causal EWMA volatility at e), so one scale fits every instrument and every regime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from engine.config import FEATURE_SET, HORIZON, TARGETS, WINDOW
from engine.data.context import MarketContext, universe_mean_returns
from engine.data.features import daily_features, ewma_volatility, feature_mask
from engine.data.io import BarTable, DataImportError


@dataclass(eq=False)  # holds arrays: compare the fields you mean
class WindowSet:
    """Per-day arrays of one instrument; windows are views into them addressed by their end day."""

    instrument: str
    dates: pd.DatetimeIndex  # [T]
    close: np.ndarray  # [T] float64
    daily: np.ndarray  # [T, n] from daily_features(feature_set); kept as the float32 channels windows read, and
    # only the live ones (mask 1 and not 0 on every day: OHLC relative to the day's close, then the others,
    # context channels after): the others read 0 in every window, so a close-only member of a universe of
    # thousands keeps 4 of its 13 channels, not 13, and not the float64 original (so never
    # dataclasses.replace a WindowSet: build_windows again)
    mask: np.ndarray  # [n]
    window: int = WINDOW
    horizon: int = HORIZON
    ends: np.ndarray | None = None  # [N] days e with a full window; default all e >= window-1
    feature_set: str = FEATURE_SET
    # Market context (engine.data.context): two more input channels, the index's vol-scaled change and its
    # path log(I_t / I_e) / sigma^I_e; `mask` then has two more entries.
    context: MarketContext | None = None
    sigma: np.ndarray | None = field(default=None, repr=False)  # [T] ewma_volatility of close (NaN on day 0);
    # build_windows passes the one its features used, else it is computed here
    _live: np.ndarray = field(init=False, repr=False)  # [n_live] the channels `daily` keeps (mask 1, not all 0)
    _blocks32: np.ndarray = field(init=False, repr=False)  # [T-window+1, window, n_live] strided view
    _close_blocks: np.ndarray = field(init=False, repr=False)  # [T-window+1, window] log close view
    _log_close: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.ends is None:
            self.ends = np.arange(self.window - 1, len(self.close))
        # Each window is one contiguous block of these views, so gathering is a memcpy per window.
        # OHLC are cached relative to the same day's close (small numbers, exact in float32); the
        # close path to the window's last close is added per window in float64.
        self._log_close = np.log(self.close)
        if self.sigma is None:
            self.sigma = ewma_volatility(self.close)
        n_own = self.daily.shape[1]
        if self.context is not None:  # the change as a daily column; the path is made per window in inputs
            change, self._ctx_level, self._ctx_sigma = self.context.channels(self.dates)
            self._ctx_blocks = sliding_window_view(self._ctx_level, self.window)
        live = np.flatnonzero(self.mask)
        channels = np.empty((len(self.close), len(live)), dtype=np.float32)
        for i, j in enumerate(live):  # at most 15 columns, each cast to float32 once
            if j < 4:
                channels[:, i] = self.daily[:, j] - self._log_close
            elif j < n_own:
                channels[:, i] = self.daily[:, j]
            else:  # context: the change, then the path's placeholder (filled per window)
                channels[:, i] = change if j == n_own else 0.0
        kept = channels.any(axis=0)  # an all-zero channel (the close relative to itself) reads 0 like a masked one
        self._live = live[kept]
        self.daily = channels if kept.all() else np.ascontiguousarray(channels[:, kept])
        self._blocks32 = sliding_window_view(self.daily, (self.window, len(self._live)))[:, 0]
        self._close_blocks = sliding_window_view(self._log_close, self.window)

    def __len__(self) -> int:
        return len(self.close)

    @property
    def n_features(self) -> int:
        """Input channels of a window: the feature set's plus any context channels."""
        return len(self.mask)

    def inputs(self, ends: np.ndarray) -> np.ndarray:
        """[n, window, n_features] float32; OHLC as log(p / close_e) (vol_scaled: / sigma_e), so a
        window reads only its own bars."""
        ends = np.asarray(ends, dtype=np.int64)
        starts = ends - (self.window - 1)
        if len(ends) and (starts.min() < 0 or ends.max() >= len(self)):
            raise IndexError(f"window ends must lie in [{self.window - 1}, {len(self) - 1}]")
        if len(self._live) == self.n_features:
            x = self._blocks32[starts]  # fancy indexing copies: [n, window, n_features]
        else:  # masked channels read 0
            x = np.zeros((len(ends), self.window, self.n_features), dtype=np.float32)
            x[..., self._live] = self._blocks32[starts]
        path = self._close_blocks[starts] - self._log_close[ends, None]  # log(close_t / close_e)
        x[..., :4] += path.astype(np.float32)[..., None] * self.mask[:4].astype(np.float32)
        if self.feature_set != "classic":
            x[..., :4] /= self.sigma[ends, None, None].astype(np.float32)
        if self.context is not None:  # NaN before the index starts: 0, like a missing value
            ctx = (self._ctx_blocks[starts] - self._ctx_level[ends, None]) / self._ctx_sigma[ends, None]
            x[..., -1] = np.nan_to_num(ctx, nan=0.0, posinf=0.0, neginf=0.0) * self.mask[-1]
        return x

    def targets(self, ends: np.ndarray) -> np.ndarray:
        """[n, horizon] log(close_{e+h} / close_e), h = 1..horizon; NaN past the last bar."""
        ends = np.asarray(ends, dtype=np.int64)
        days = ends[:, None] + np.arange(1, self.horizon + 1)
        inside = days < len(self)
        later = self._log_close[np.minimum(days, len(self) - 1)]
        return np.where(inside, later - self._log_close[ends, None], np.nan)

    def units(self, ends: np.ndarray) -> np.ndarray:
        """[n, horizon] sigma_e * sqrt(h): the log return of one vol-normalised unit per horizon."""
        return self.sigma[np.asarray(ends, dtype=np.int64), None] * np.sqrt(np.arange(1, self.horizon + 1))

    def scaled_targets(self, ends: np.ndarray) -> np.ndarray:
        """[n, horizon] z_{e,h} = log(close_{e+h} / close_e) / (sigma_e sqrt h); NaN past the last bar."""
        return self.targets(ends) / self.units(ends)

    def next_returns(self, days: np.ndarray) -> np.ndarray:
        """close_{t+1} / close_t - 1: what a position held from close t earns; NaN at the last day."""
        days = np.asarray(days, dtype=np.int64)
        later = self.close[np.minimum(days + 1, len(self) - 1)]
        return np.where(days + 1 < len(self), later / self.close[days] - 1.0, np.nan)

    def has_targets(self, ends: np.ndarray) -> np.ndarray:
        return np.asarray(ends) + self.horizon < len(self)


def build_windows(bars: BarTable, window: int = WINDOW, horizon: int = HORIZON,
                  feature_set: str = FEATURE_SET, context: MarketContext | None = None) -> WindowSet:
    needed = window + horizon + 1
    if len(bars.frame) < needed:
        raise DataImportError(bars.source, None, None, f"too little history: {len(bars.frame)} bars, "
                              f"one window needs {needed} ({window} days in, {horizon} targets, "
                              "1 next-day return)")
    close = bars.frame["close"].to_numpy(dtype=np.float64, copy=True)  # a copy: the frame's block may go
    sigma = ewma_volatility(close)
    dates = bars.frame.index if isinstance(bars.frame.index, pd.DatetimeIndex) else pd.DatetimeIndex(bars.frame.index)
    return WindowSet(instrument=bars.instrument, dates=dates, close=close,
                     daily=daily_features(bars.frame, feature_set, sigma), mask=_mask(bars, feature_set, context),
                     window=window, horizon=horizon, feature_set=feature_set, context=context, sigma=sigma)


def _mask(bars: BarTable, feature_set: str, context: MarketContext | None) -> np.ndarray:
    """feature_mask, with the two context channels (0 when the index has no day up to this bars' last)."""
    mask = feature_mask(bars, feature_set)
    if context is None:
        return mask
    known = float(np.isfinite(context.aligned(pd.DatetimeIndex(bars.frame.index[-1:]))[0]).all())
    return np.r_[mask, known, known].astype(np.float32)


def targets_to_prices(targets: np.ndarray, last_close: np.ndarray | float) -> np.ndarray:
    """Inverse of WindowSet.targets: the predicted closes, last_close * exp(t)."""
    return np.asarray(last_close, dtype=np.float64)[..., None] * np.exp(targets)


@dataclass
class Split:
    """Window end days (or (set, end) pairs for pooled data) of each chronological part."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _carve(usable: np.ndarray, n_val: int, n_test: int, embargo: int) -> Split:
    """train | embargo | val | embargo | test, from the end; the embargo skips only nonempty parts."""
    stop = len(usable)
    test = usable[stop - n_test:stop]
    stop -= n_test + (embargo if n_test else 0)
    val = usable[max(stop - n_val, 0):max(stop, 0)]
    stop -= n_val + (embargo if n_val else 0)
    return Split(train=usable[:max(stop, 0)], val=val, test=test)


def _usable(ws: WindowSet, embargo: int) -> tuple[np.ndarray, int]:
    """Ends whose targets exist, and the embargo widened to the horizon so no target crosses over."""
    return ws.ends[ws.has_targets(ws.ends)], max(int(embargo), ws.horizon)


def chronological_split(ws: WindowSet, val_fraction: float, test_fraction: float,
                        embargo: int) -> Split:
    """Train, validation, test in time order; `embargo` ends (at least the horizon) dropped before
    val and before test, so no train target or strategy return reaches the first val/test end."""
    usable, embargo = _usable(ws, embargo)
    n = len(usable)
    split = _carve(usable, round(n * val_fraction), round(n * test_fraction), embargo)
    if not len(split.train):
        raise ValueError(f"{ws.instrument}: {n} usable windows leave nothing to train on "
                         f"(val {val_fraction:.0%}, test {test_fraction:.0%}, embargo {embargo})")
    return split


def walk_forward_folds(ws: WindowSet, n_folds: int, test_size: int, embargo: int,
                       min_train: int) -> list[Split]:
    """Expanding folds tiling the last n_folds * test_size ends; each fold validates on the
    test_size ends before its test block (embargo between every part)."""
    usable, embargo = _usable(ws, embargo)
    folds = [_carve(usable[:len(usable) - k * test_size], test_size, test_size, embargo)
             for k in reversed(range(n_folds))]
    if not folds or len(folds[0].train) < min_train or len(folds[0].test) < test_size:
        have = len(folds[0].train) if folds else 0
        raise ValueError(f"{ws.instrument}: the first of {n_folds} folds has {have} training windows, "
                         f"fewer than min_train={min_train} (or too few windows for the test blocks)")
    return folds


def sequence_starts(ends: np.ndarray, seq_len: int, n_days: int | None = None) -> np.ndarray:
    """Starts s with s..s+seq_len-1 all in `ends` (consecutive days). Ends from a split all have a
    next return; pass n_days (the series length) to also drop sequences reaching the last day."""
    ends = np.unique(np.asarray(ends, dtype=np.int64))
    if n_days is not None:
        ends = ends[ends < n_days - 1]
    if len(ends) < seq_len:
        return np.empty(0, dtype=np.int64)
    first = ends[: len(ends) - seq_len + 1]
    return first[ends[seq_len - 1:] - first == seq_len - 1]


class PooledWindows:
    """Several instruments as one dataset; an item is a (set index, end day) pair."""

    def __init__(self, sets: list[WindowSet], target: str = "own") -> None:
        if not sets:
            raise ValueError("PooledWindows needs at least one WindowSet")
        shapes = {(ws.window, ws.horizon, ws.feature_set, ws.n_features) for ws in sets}
        if len(shapes) > 1:
            raise ValueError(f"pooled sets differ in (window, horizon, feature set, features): {sorted(shapes)}")
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose one of {list(TARGETS)}")
        self.sets = list(sets)
        self.window, self.horizon, self.target = sets[0].window, sets[0].horizon, target
        self._market: dict[int, np.ndarray] | None = None  # id(set) -> [T_k, H] the universe's mean h-day return
        if target == "excess":
            own = [ws.targets(np.arange(len(ws))) for ws in self.sets]
            calendar, mean = universe_mean_returns([ws.dates for ws in self.sets], own)
            self._market = {id(ws): mean[calendar.get_indexer(ws.dates)].astype(np.float32) for ws in self.sets}

    @staticmethod
    def pairs(ends_per_set: list[np.ndarray]) -> np.ndarray:
        """[n, 2] int64 items from each set's end days."""
        lengths = [len(e) for e in ends_per_set]
        items = np.empty((sum(lengths), 2), dtype=np.int64)
        if len(items):
            items[:, 0] = np.repeat(np.arange(len(lengths)), lengths)
            items[:, 1] = np.concatenate(ends_per_set)
        return items

    def split(self, val_fraction: float, test_fraction: float, embargo: int) -> Split:
        """Each instrument split chronologically on its own, then pooled."""
        splits = [chronological_split(ws, val_fraction, test_fraction, embargo) for ws in self.sets]
        return Split(*(self.pairs([getattr(s, part) for s in splits]) for part in ("train", "val", "test")))

    @staticmethod
    def by_set(items: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """(set index, rows of `items` in it) for each set the items touch: one sort, so a batch from a
        universe of thousands costs its own size, not a pass over every set."""
        if not len(items):
            return []
        order = np.argsort(items[:, 0], kind="stable")
        keys, starts = np.unique(items[order, 0], return_index=True)
        return list(zip(keys.tolist(), np.split(order, starts[1:]), strict=True))

    def _gather(self, items: np.ndarray, fetch, shape: tuple[int, ...], dtype) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64).reshape(-1, 2)
        out = np.empty((len(items), *shape), dtype=dtype)
        for k, rows in self.by_set(items):  # rows are gathered vectorised per set
            out[rows] = fetch(self.sets[k], items[rows, 1])
        return out

    def inputs(self, items: np.ndarray) -> np.ndarray:
        shape = (self.window, self.sets[0].n_features)
        return self._gather(items, WindowSet.inputs, shape, np.float32)

    def targets(self, items: np.ndarray) -> np.ndarray:
        return self._gather(items, WindowSet.targets, (self.horizon,), np.float64)

    def scaled_targets(self, items: np.ndarray) -> np.ndarray:
        return self._gather(items, WindowSet.scaled_targets, (self.horizon,), np.float64)

    def fit_targets(self, items: np.ndarray) -> np.ndarray:
        """[n, horizon] what the network learns, in log returns: the own h-day return, or (target
        "excess") it minus the universe's mean h-day return that day (engine.data.context)."""
        own = self.targets(items)
        if self._market is None:
            return own
        market = self._gather(items, lambda ws, ends: self._market[id(ws)][ends],
                              (self.horizon,), np.float64)
        return own - market

    def units(self, items: np.ndarray) -> np.ndarray:
        return self._gather(items, WindowSet.units, (self.horizon,), np.float64)

    def masks(self, items: np.ndarray) -> np.ndarray:
        fetch = lambda ws, ends: np.broadcast_to(ws.mask, (len(ends), len(ws.mask)))
        return self._gather(items, fetch, (self.sets[0].n_features,), np.float32)

    def next_returns(self, items: np.ndarray) -> np.ndarray:
        return self._gather(items, WindowSet.next_returns, (), np.float64)

    def closes(self, items: np.ndarray) -> np.ndarray:
        """close_e of each item: the price its h-day returns are relative to."""
        return self._gather(items, lambda ws, ends: ws.close[ends], (), np.float64)

    def sigmas(self, items: np.ndarray) -> np.ndarray:
        return self._gather(items, lambda ws, ends: ws.sigma[ends], (), np.float64)
