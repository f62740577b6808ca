"""Stage 2 never learns from in-sample features: every day whose features it trains or validates on
(and the next return it learns from) lies after the last training target of the price network
that encoded it, and before the test part. A property over random pools and cut dates, and the
bundled instruments pooled as a user would."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.data import CutDates, WindowSet, build_windows, calendar_cut_dates, calendar_split, load_bars
from engine.data.splits import strategy_cut_dates
from engine.training.strategy import strategy_sequences
from tests.engine.data.test_splits import pools


def assert_stage2_days_are_out_of_sample(ws: WindowSet, price_cuts: CutDates, cuts: CutDates,
                                         seq_len: int) -> tuple[int, int]:
    """The rule for one instrument; returns its numbers of train and validation sequences."""
    train, val = strategy_sequences(ws, price_cuts, cuts, seq_len)
    steps = np.arange(seq_len)
    price_train = calendar_split(ws, price_cuts, ws.horizon).train
    last_price_target = price_train.max() + ws.horizon if len(price_train) else -1
    for starts in (train, val):
        days = (starts[:, None] + steps).ravel()  # every day whose features a sequence reads
        assert np.all(ws.dates[days] > pd.Timestamp(price_cuts.train_end))
        assert np.all(days > last_price_target)  # no price training target reaches it
        assert np.all(ws.dates[days + 1] <= pd.Timestamp(price_cuts.val_end))  # its returns: no test day
    if len(train) and len(val):
        assert (train + seq_len).max() < val.min()  # stage 2's validation starts after its training returns
    return len(train), len(val)


@settings(max_examples=150, deadline=None)
@given(pools(), st.integers(2, 8))
def test_every_stage2_day_lies_after_the_encoding_price_networks_training(pool, seq_len):
    sets, dates, val_fraction, test_fraction, embargo = pool
    try:
        price_cuts = calendar_cut_dates(sets, val_fraction, test_fraction, embargo=embargo, **dates)
        cuts = strategy_cut_dates(sets, price_cuts)
    except ValueError:  # dates outside a short pool, or a validation period of under two days
        return
    assert price_cuts.train_end < cuts.train_end < cuts.val_end == price_cuts.val_end
    for ws in sets:
        assert_stage2_days_are_out_of_sample(ws, price_cuts, cuts, seq_len)


@pytest.mark.parametrize("names, dates", [
    (("sse", "spx", "aapl", "goog"), {}),
    (("spx", "goog"), {"train_end": "2008-12-31", "val_end": "2011-06-30"}),
    (("goog",), {}),
])
def test_bundled_pools_give_stage2_out_of_sample_days_to_train_and_validate_on(names, dates):
    sets = [build_windows(load_bars(name)) for name in names]
    price_cuts = calendar_cut_dates(sets, 0.15, 0.15, embargo=7, **dates)
    cuts = strategy_cut_dates(sets, price_cuts)
    counts = [assert_stage2_days_are_out_of_sample(ws, price_cuts, cuts, 20) for ws in sets]
    assert sum(t for t, _ in counts) > 0 and sum(v for _, v in counts) > 0
