"""Market context is causal and aligned per instrument; excess targets are own minus the universe mean."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from engine.config import CONTEXT_FEATURES, FEATURE_SETS, DataConfig, n_features
from engine.data import BarTable, PooledWindows, build_windows, load_bars
from engine.data.context import equal_weight_context, market_context, universe_mean_returns
from engine.data.universe import load_universe
from engine.training.price import price_split

W, H = 20, 3


def close_table(name: str, close: np.ndarray, dates: pd.DatetimeIndex) -> BarTable:
    frame = pd.DataFrame({k: np.nan for k in ("open", "high", "low", "volume", "amount", "turnover", "trades")},
                         index=pd.DatetimeIndex(dates, name="date"))
    frame["close"] = close
    return BarTable(frame=frame, present=["close"], derived=[],
                    missing=["open", "high", "low", "volume", "amount", "turnover", "trades"], warnings=[],
                    source=name, instrument=name, market="us", fingerprint=name)


def random_tables(n: int, days: int, seed: int) -> list[BarTable]:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2010-01-01", periods=days)
    out = []
    for k in range(n):
        keep = np.sort(rng.choice(days, size=days - 7 * k, replace=False))  # different calendars
        out.append(close_table(f"S{k}", 100 * np.exp(np.cumsum(rng.normal(0, 0.02, len(keep)))), dates[keep]))
    return out


def test_equal_weight_index_is_the_mean_log_return_of_instruments_that_traded():
    dates = pd.bdate_range("2020-01-01", periods=4)
    a = close_table("A", np.array([100.0, 110.0, 121.0, 121.0]), dates)
    b = close_table("B", np.array([50.0, 50.0, 25.0]), dates[[0, 1, 3]])  # skips day 2
    ctx = equal_weight_context([a, b])
    steps = np.diff(ctx.log_level)
    assert np.allclose(steps, [np.log(1.1) / 2, np.log(1.1), (0.0 + np.log(0.5)) / 2])
    level, _ = ctx.aligned(b.frame.index)
    assert np.allclose(level, ctx.log_level[[0, 1, 3]])


def test_context_channels_are_causal_changing_future_index_bars_leaves_past_inputs():
    tables = random_tables(6, 400, 1)
    changed = [replace(t, frame=t.frame.copy()) for t in tables]
    cut = pd.Timestamp(tables[0].frame.index[300])
    for t in changed:  # every instrument's future moves, so the equal-weight index's future moves
        t.frame.loc[t.frame.index > cut, "close"] *= np.linspace(0.5, 2.0, int((t.frame.index > cut).sum()))
    before, after = (build_windows(tables[0], W, H, context=equal_weight_context(ts)) for ts in (tables, changed))
    assert before.n_features == len(FEATURE_SETS["vol_scaled"]) + len(CONTEXT_FEATURES)
    past = before.ends[before.dates[before.ends] <= cut]
    x0, x1 = before.inputs(past), after.inputs(past)
    assert np.array_equal(x0, x1)
    later = before.ends[before.dates[before.ends] > cut]
    assert not np.array_equal(before.inputs(later)[..., -2:], after.inputs(later)[..., -2:])
    assert np.all(x0[:, -1, -1] == 0) and x0[..., -1].std() > 0.3  # the path is relative to the window's end
    assert before.mask[-2:].tolist() == [1, 1]


def test_context_of_a_picked_index_is_aligned_to_the_last_index_day_on_or_before():
    spx = load_bars("spx")
    member = load_bars("us12:JPM")
    ctx = market_context("spx", [member])
    ws = build_windows(member, W, H, context=ctx)
    level, sigma = ctx.aligned(ws.dates)
    on = ws.dates.isin(spx.frame.index)
    assert np.allclose(level[on], np.log(spx.frame["close"].reindex(ws.dates[on]).to_numpy()))
    x = ws.inputs(ws.ends[-5:])
    e = ws.ends[-1]
    expected = (level[e - W + 1:e + 1] - level[e]) / sigma[e]
    assert np.allclose(x[-1, :, -1], expected, atol=1e-5)


def test_excess_target_is_own_minus_the_cross_sectional_mean_on_a_hand_example():
    dates = pd.bdate_range("2020-01-01", periods=W + 5)
    a = 100 * np.exp(0.01 * np.arange(W + 5))  # +1 % a day
    b = 100 * np.exp(-0.02 * np.arange(W + 5))  # -2 % a day
    c = 100 * np.exp(0.04 * np.arange(W + 3))  # +4 % a day, two days shorter
    sets = [build_windows(close_table(n, x, dates[:len(x)]), W, 2) for n, x in (("A", a), ("B", b), ("C", c))]
    pooled = PooledWindows(sets, target="excess")
    items = PooledWindows.pairs([np.array([W - 1, W + 1])] * 3)
    got = pooled.fit_targets(items)
    # day W-1: h=1 all three (mean 0.01), h=2 all three (mean 0.02); day W+1: h=1 all three, h=2 only A, B
    # (C has no close two days after), so the mean is over A and B: (0.02 - 0.04) / 2 = -0.01
    own = np.array([[0.01, 0.02], [0.01, 0.02], [-0.02, -0.04], [-0.02, -0.04], [0.04, 0.08], [0.04, np.nan]])
    mean = np.array([[0.01, 0.02], [0.01, -0.01]] * 3)
    assert np.allclose(got, own - mean, equal_nan=True, atol=1e-6)
    assert np.allclose(PooledWindows(sets).fit_targets(items), own, equal_nan=True)
    calendar, m = universe_mean_returns([ws.dates for ws in sets], [ws.targets(np.arange(len(ws))) for ws in sets])
    assert len(calendar) == W + 5 and np.isnan(m[-1]).all()


def test_a_pooled_us12_split_cuts_every_member_at_the_same_dates():
    universe = load_universe("us12")
    cfg = DataConfig(window=60, horizon=H, context="equal_weight", target="excess")
    pooled, split = price_split(universe.tables, cfg)
    assert n_features(cfg) == pooled.sets[0].n_features
    train_last = {pooled.sets[k].dates[e] for k, e in split.train if e == split.train[split.train[:, 0] == k, 1].max()}
    val_first = {pooled.sets[k].dates[e] for k, e in split.val if e == split.val[split.val[:, 0] == k, 1].min()}
    assert len(train_last) == 1 and len(val_first) == 1  # one calendar: every member ends training the same day
    assert max(train_last) < min(val_first)


@pytest.mark.parametrize("bad", ["nope"])
def test_an_unknown_target_is_refused(bad):
    with pytest.raises(ValueError, match="unknown target"):
        PooledWindows(random_tables_sets(), target=bad)


def random_tables_sets():
    return [build_windows(t, W, H) for t in random_tables(2, 120, 0)]
