"""Calendar splits: one set of cut dates for every instrument, no target crossing a cut, clear refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.data import PooledWindows, WindowSet, build_windows, load_bars
from engine.data.splits import (
    CutDates,
    calendar_cut_dates,
    calendar_split,
    days_after,
    pooled_calendar,
    pooled_calendar_split,
    split_json,
)

W, H = 5, 3


def tiny_set(name: str, dates: pd.DatetimeIndex, seed: int = 0) -> WindowSet:
    """A WindowSet on given days; features are irrelevant to splits, so zeros keep it fast."""
    close = 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.01, len(dates))))
    return WindowSet(instrument=name, dates=dates, close=close, daily=np.zeros((len(dates), 11)),
                     mask=np.ones(11, np.float32), window=W, horizon=H)


@pytest.fixture(scope="module")
def bundled() -> dict[str, WindowSet]:
    return {name: build_windows(load_bars(name)) for name in ("sse", "spx", "aapl", "goog")}


def assert_parts_respect_cuts(ws: WindowSet, cuts: CutDates, embargo: int) -> None:
    """Every train target on or before train_end, val strictly between (by at least the embargo in
    bars), test after val_end: the leak-free promise, checked in dates and in bars."""
    split = calendar_split(ws, cuts, embargo)
    e = max(embargo, ws.horizon)
    train_end, val_end = pd.Timestamp(cuts.train_end), pd.Timestamp(cuts.val_end)
    last_train_day = ws.dates.searchsorted(train_end, side="right") - 1
    last_val_day = ws.dates.searchsorted(val_end, side="right") - 1
    for part in (split.train, split.val, split.test):
        assert np.all(np.diff(part) > 0) and np.all(part + ws.horizon < len(ws))
    assert np.all(ws.dates[split.train + ws.horizon] <= train_end)
    assert np.all(ws.dates[split.val] > train_end) and np.all(split.val - last_train_day >= e)
    assert np.all(ws.dates[split.val + ws.horizon] <= val_end)
    assert np.all(ws.dates[split.test] > val_end) and np.all(split.test - last_val_day >= e)
    if cuts.test_start is not None:
        assert np.all(ws.dates[split.test] >= pd.Timestamp(cuts.test_start))
    if len(split.train) and len(split.val):
        assert split.train[-1] + ws.horizon < split.val[0]  # no train target reaches the first val day
    if len(split.val) and len(split.test):
        assert split.val[-1] + ws.horizon < split.test[0]


def test_one_set_of_cut_dates_for_every_bundled_instrument(bundled):
    sets = list(bundled.values())
    cuts = calendar_cut_dates(sets, 0.15, 0.15)
    calendar = pooled_calendar(sets)
    assert calendar[0] == pd.Timestamp("1990-12-19") and calendar[-1] == pd.Timestamp("2025-08-05")
    assert abs(calendar.searchsorted(pd.Timestamp(cuts.train_end)) / len(calendar) - 0.70) < 0.001
    assert abs(calendar.searchsorted(pd.Timestamp(cuts.val_end)) / len(calendar) - 0.85) < 0.001
    for ws in sets:
        assert_parts_respect_cuts(ws, cuts, embargo=0)
    # AAPL and GOOG end in 2013, long before the pooled cuts: all train, no val or test days
    for name in ("aapl", "goog"):
        split = calendar_split(bundled[name], cuts, 0)
        assert len(split.train) > 0 and len(split.val) == 0 and len(split.test) == 0


def test_goog_and_aapl_test_lies_after_the_index_training_years(bundled):
    cuts = calendar_cut_dates(list(bundled.values()), 0.15, 0.15, train_end="2008-12-31", val_end="2010-12-31")
    train_last = max(ws.dates[calendar_split(ws, cuts, 0).train[-1] + ws.horizon]
                     for ws in (bundled["spx"], bundled["sse"]))
    assert train_last <= pd.Timestamp("2008-12-31")
    for name in ("goog", "aapl"):
        ws = bundled[name]
        test = calendar_split(ws, cuts, 0).test
        assert len(test) > 400 and ws.dates[test[0]] > pd.Timestamp("2010-12-31") > train_last
    assert split_json(cuts, list(bundled.values())) == {
        "train": ["1991-09-02", "2008-12-31"], "val": ["2009-01-12", "2010-12-31"],
        "test": [cuts.test_start, "2025-08-05"]}


def test_explicit_dates_are_honoured_and_recorded(bundled):
    sets = [bundled["spx"], bundled["aapl"]]
    cuts = calendar_cut_dates(sets, 0.15, 0.15, train_end=pd.Timestamp("2006-06-30"), val_end="2009-06-30")
    assert (cuts.train_end, cuts.val_end) == ("2006-06-30", "2009-06-30")
    assert cuts.test_start > cuts.val_end
    assert CutDates.from_dict(cuts.to_dict()) == cuts
    spx = calendar_split(bundled["spx"], cuts, embargo=10)
    # 2006-06-30 is a trading day: the last train target lands on it
    assert bundled["spx"].dates[spx.train[-1] + bundled["spx"].horizon] == pd.Timestamp("2006-06-30")
    for ws in sets:
        assert_parts_respect_cuts(ws, cuts, embargo=10)
    json = split_json(cuts, sets, embargo=10)
    assert json["train"][1] == "2006-06-30" and json["val"][1] <= "2009-06-30" < json["test"][0]


def test_only_one_explicit_date_takes_the_other_from_its_fraction(bundled):
    sets = [bundled["spx"]]
    cuts = calendar_cut_dates(sets, 0.15, 0.15, train_end="2010-01-04")
    assert cuts.train_end == "2010-01-04" and cuts.val_end == calendar_cut_dates(sets, 0.15, 0.15).val_end


@pytest.mark.parametrize(("train_end", "val_end", "message"), [
    ("2012-01-01", "2010-01-01", "train_end 2012-01-01 must come before val_end 2010-01-01"),
    ("1990-01-01", "2010-01-01", "train_end 1990-01-01 lies outside the data: the data run from 1999-01-04"),
    ("2010-01-01", "2030-01-01", "val_end 2030-01-01 lies outside the data"),
    ("not a date", "2010-01-01", "train_end: 'not a date' is not a date (use YYYY-MM-DD)"),
    ("2018-06-01", None, "train_end 2018-06-01 must come before val_end 2015-12-30 (from the fractions)"),
])
def test_bad_dates_are_refused_with_a_clear_message(bundled, train_end, val_end, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        calendar_cut_dates([bundled["spx"]], 0.15, 0.15, train_end=train_end, val_end=val_end)


def test_cut_dates_refuse_an_inverted_record():
    with pytest.raises(ValueError, match="train_end 2010-01-01 must come before val_end 2009-01-01"):
        CutDates.from_dict({"train_end": "2010-01-01", "val_end": "2009-01-01"})
    with pytest.raises(ValueError, match="test_start 2009-01-01 must come after val_end"):
        CutDates("2008-01-01", "2009-06-01", "2009-01-01")


def test_an_instrument_ending_before_the_test_start_has_an_empty_test_part_and_days_after_says_so():
    days = pd.bdate_range("2001-01-01", periods=400)
    long, short = tiny_set("LONG", days), tiny_set("SHORT", days[:292])  # ends before the test start
    cuts = CutDates(days[200], days[290], days[293])
    split = calendar_split(short, cuts, embargo=0)
    assert len(split.train) and len(split.val) and split.test.dtype == short.ends.dtype and len(split.test) == 0
    assert len(calendar_split(long, cuts, embargo=0).test) > 0
    assert split_json(cuts, [short])["test"] == [f"{days[293]:%Y-%m-%d}", None]
    assert days_after(long, cuts.val_end)[0] == 290
    with pytest.raises(ValueError, match=f"SHORT: no days on or after the model's test start {days[350]:%Y-%m-%d}"):
        days_after(short, days[350])


def test_a_pool_with_nothing_before_train_end_is_refused():
    later = tiny_set("LATE", pd.bdate_range("2005-01-03", periods=100))
    cuts = CutDates("2005-01-10", "2005-03-01")
    with pytest.raises(ValueError, match=r"no instrument \(LATE\) has a full window"):
        pooled_calendar_split(PooledWindows([later]), cuts, embargo=0)


def test_pooled_split_gathers_each_instruments_parts(bundled):
    sets = [bundled["spx"], bundled["goog"]]
    cuts = calendar_cut_dates(sets, 0.15, 0.15, train_end="2008-12-31", val_end="2010-12-31")
    pooled = pooled_calendar_split(PooledWindows(sets), cuts, embargo=0)
    for k, ws in enumerate(sets):
        np.testing.assert_array_equal(pooled.val[pooled.val[:, 0] == k, 1], calendar_split(ws, cuts, 0).val)


@st.composite
def pools(draw):
    """1-4 instruments on overlapping business-day spans with holes, and cut dates somewhere inside."""
    base = pd.bdate_range("2000-01-03", periods=600)
    sets = []
    for k in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, 300))
        stop = draw(st.integers(start + W + H + 2, 600))
        keep = np.random.default_rng(draw(st.integers(0, 2**16))).random(stop - start) > 0.1
        keep[:W + H + 2] = True
        sets.append(tiny_set(f"I{k}", base[start:stop][keep], seed=k))
    explicit = draw(st.booleans())
    if explicit:
        a = draw(st.integers(0, 580))
        b = draw(st.integers(a + 1, 599))
        dates = {"train_end": base[a], "val_end": base[b]}
    else:
        dates = {}
    return sets, dates, draw(st.floats(0.05, 0.4)), draw(st.floats(0.0, 0.4)), draw(st.integers(0, 12))


@settings(max_examples=150, deadline=None)
@given(pools())
def test_no_target_crosses_a_cut_for_any_pool(pool):
    sets, dates, val_fraction, test_fraction, embargo = pool
    try:
        cuts = calendar_cut_dates(sets, val_fraction, test_fraction, embargo=embargo, **dates)
    except ValueError as exc:  # explicit dates outside a short pool, or fractions leaving no train days
        assert "outside the data" in str(exc) or "must come before" in str(exc) or "leave some" in str(exc)
        return
    for ws in sets:
        assert_parts_respect_cuts(ws, cuts, embargo)
    train_targets = [ws.dates[calendar_split(ws, cuts, embargo).train + H] for ws in sets]
    val_days = [ws.dates[calendar_split(ws, cuts, embargo).val] for ws in sets]
    test_days = [ws.dates[calendar_split(ws, cuts, embargo).test] for ws in sets]
    latest_train = max((d.max() for d in train_targets if len(d)), default=pd.Timestamp.min)
    assert all(d.min() > latest_train for d in val_days + test_days if len(d))  # across instruments too
