"""Windows read only the past, targets invert to prices, and splits never share a target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.config import FEATURE_NAMES
from engine.data import (
    BarTable,
    DataImportError,
    PooledWindows,
    build_windows,
    chronological_split,
    daily_features,
    feature_mask,
    load_bars,
    sequence_starts,
    targets_to_prices,
    walk_forward_folds,
)

W, H = 12, 3  # small windows keep the property tests fast


def random_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.005, n))
    volume = rng.integers(100_000, 1_000_000, n).astype(float)
    return pd.DataFrame({
        "open": open_, "high": np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, n)),
        "low": np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, n)), "close": close,
        "volume": volume, "amount": close * volume, "turnover": np.nan, "trades": np.nan,
    }, index=pd.DatetimeIndex(pd.bdate_range("2001-01-01", periods=n), name="date"))


def as_bars(frame: pd.DataFrame) -> BarTable:
    return BarTable(frame=frame, present=["open", "high", "low", "close", "volume", "amount"], derived=[],
                    missing=["turnover", "trades"], warnings=[], source="test", instrument="test",
                    market="unknown", fingerprint="")


@pytest.fixture(scope="module")
def sse():
    return build_windows(load_bars("sse"))


def test_classic_inputs_shape_dtype_and_window_relative_prices():
    sse = build_windows(load_bars("sse"), feature_set="classic")
    x = sse.inputs(sse.ends)
    assert x.shape == (8455 - 179, 180, 11) and x.dtype == np.float32
    assert np.all(x[:, -1, 3] == 0)  # the last close of each window is the reference
    e = 5000
    frame = load_bars("sse").frame.iloc[e - 179:e + 1]
    expected = np.log(frame[["open", "high", "low", "close"]].to_numpy() / frame["close"].iloc[-1])
    np.testing.assert_allclose(x[e - 179, :, :4], expected, atol=1e-6)
    change = sse.close[e - 179:e + 1] / sse.close[e - 180:e] - 1
    np.testing.assert_allclose(x[e - 179, :, 4], change, rtol=1e-5)


def ewma_by_definition(close: np.ndarray, t: int, lam: float = 0.94) -> float:
    """sigma_t from its definition: the lam^i-weighted mean of the squared log returns up to day t."""
    r = np.diff(np.log(close[:t + 1]))[::-1]  # r_t, r_{t-1}, ..., r_1
    w = lam ** np.arange(len(r))
    return float(np.sqrt((w * r**2).sum() / w.sum()))


def test_vol_scaled_inputs_are_in_units_of_the_causal_ewma_volatility(sse):
    x = sse.inputs(sse.ends)
    assert x.shape == (8455 - 179, 180, len(FEATURE_NAMES)) and x.dtype == np.float32
    assert np.all(x[:, -1, 3] == 0)  # the last close of each window is the reference
    e = 5000
    sigma_e = ewma_by_definition(sse.close, e)
    assert sse.sigma[e] == pytest.approx(sigma_e, rel=1e-9)
    frame = load_bars("sse").frame.iloc[e - 179:e + 1]
    expected = np.log(frame[["open", "high", "low", "close"]].to_numpy() / frame["close"].iloc[-1]) / sigma_e
    np.testing.assert_allclose(x[e - 179, :, :4], expected, rtol=1e-5, atol=1e-5)
    sigma_prev = np.array([ewma_by_definition(sse.close, t) for t in range(e - 180, e)])
    change = np.log(sse.close[e - 179:e + 1] / sse.close[e - 180:e]) / sigma_prev
    np.testing.assert_allclose(x[e - 179, :, 4], np.clip(change, -10, 10), rtol=1e-5)
    day_sin, day_cos = FEATURE_NAMES.index("day_sin"), FEATURE_NAMES.index("day_cos")
    np.testing.assert_allclose(x[..., day_sin] ** 2 + x[..., day_cos] ** 2, 1.0, rtol=1e-5)
    z = sse.scaled_targets(np.array([e]))[0]
    np.testing.assert_allclose(sse.close[e] * np.exp(z * sigma_e * np.sqrt(np.arange(1, 8))),
                               sse.close[e + 1:e + 8], rtol=1e-9)


def test_missing_features_are_zero_and_masked(sse):
    turnover, trades = FEATURE_NAMES.index("turnover"), FEATURE_NAMES.index("trades")
    assert sse.mask.tolist() == [1] * 8 + [0, 0] + [1] * (len(FEATURE_NAMES) - 10)
    assert not sse.inputs(sse.ends[-50:])[..., [turnover, trades]].any()
    spx = load_bars("spx")
    assert feature_mask(spx)[FEATURE_NAMES.index("amount")] == 1  # derived, flagged in bars.derived
    assert np.isfinite(daily_features(spx.frame)).all()
    assert feature_mask(load_bars("sse"), "classic").tolist() == [1] * 8 + [0, 0, 1]


def test_targets_invert_to_the_next_closes(sse):
    ends = np.array([179, 4000, len(sse) - 8])
    prices = targets_to_prices(sse.targets(ends), sse.close[ends])
    np.testing.assert_allclose(prices, sse.close[ends[:, None] + np.arange(1, 8)], rtol=1e-12)
    last = sse.targets(np.array([len(sse) - 3]))
    assert np.isfinite(last[0, :2]).all() and np.isnan(last[0, 2:]).all()
    assert np.isnan(sse.next_returns(np.array([len(sse) - 1])))[0]
    assert sse.next_returns(np.array([10]))[0] == pytest.approx(sse.close[11] / sse.close[10] - 1)


def test_daily_features_are_causal_on_real_data():
    frame = load_bars("spdb").frame
    for feature_set in ("vol_scaled", "classic"):
        full = daily_features(frame, feature_set)
        for t in (0, 1, 59, 60, 3000):
            np.testing.assert_array_equal(daily_features(frame.iloc[:t + 1], feature_set), full[:t + 1])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(W + H + 2, 90), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_changing_any_bar_after_t_leaves_windows_up_to_t_unchanged(n, seed, data):
    frame = random_frame(n, seed)
    t = data.draw(st.integers(W - 1, n - 2), label="t")
    row = data.draw(st.integers(t + 1, n - 1), label="changed row")
    factor = data.draw(st.floats(0.2, 5.0).filter(lambda f: abs(f - 1) > 1e-3), label="factor")
    changed = frame.copy()
    changed.iloc[row:] *= factor  # every later bar (prices and volumes) moves
    before, after = build_windows(as_bars(frame), W, H), build_windows(as_bars(changed), W, H)
    ends = np.arange(W - 1, t + 1)
    np.testing.assert_array_equal(before.inputs(ends), after.inputs(ends))
    known = ends[ends + H <= t]  # targets that only read bars up to t
    np.testing.assert_array_equal(before.targets(known), after.targets(known))


def _target_days(ends: np.ndarray) -> set[int]:
    return set((ends[:, None] + np.arange(1, H + 1)).ravel().tolist())


def _assert_no_leak(split, n_days: int) -> None:
    parts = [p for p in (split.train, split.val, split.test) if len(p)]
    for p in parts:
        assert (p + H < n_days).all()  # every end has its targets
    for i, a in enumerate(parts):
        for b in parts[i + 1:]:
            assert a.max() + H < b.min()  # a's targets (and returns) end before b's first window end
            assert not _target_days(a) & _target_days(b)
            assert not _target_days(a) & set(b.tolist()) and not _target_days(b) & set(a.tolist())
    starts = sequence_starts(split.train, 5)
    if len(split.val) and len(starts):
        assert starts.max() + 5 < split.val.min()  # last return of a train sequence: close s+4 -> s+5


@settings(max_examples=60, deadline=None)
@given(n=st.integers(40, 300), val=st.floats(0.0, 0.3), test=st.floats(0.0, 0.3),
       embargo=st.integers(0, 15))
def test_chronological_split_never_shares_targets(n, val, test, embargo):
    ws = build_windows(as_bars(random_frame(n, n)), W, H)
    try:
        split = chronological_split(ws, val, test, embargo)
    except ValueError:
        assume(False)
    _assert_no_leak(split, n)
    usable = ws.ends[ws.ends + H < n]
    assert len(split.test) == round(len(usable) * test) and len(split.val) == round(len(usable) * val)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(80, 300), folds=st.integers(1, 4), size=st.integers(5, 20), embargo=st.integers(0, 8))
def test_walk_forward_folds_expand_and_never_share_targets(n, folds, size, embargo):
    ws = build_windows(as_bars(random_frame(n, n + 1)), W, H)
    try:
        result = walk_forward_folds(ws, folds, size, embargo, min_train=10)
    except ValueError:
        assume(False)
    assert len(result) == folds
    for fold in result:
        _assert_no_leak(fold, n)
        assert len(fold.test) == size == len(fold.val)
    assert all(a.test.max() + 1 == b.test.min() for a, b in zip(result, result[1:]))
    assert [len(f.train) for f in result] == sorted(len(f.train) for f in result)
    assert result[-1].test.max() == n - 1 - H


def test_too_little_history_is_an_import_error():
    with pytest.raises(DataImportError, match="too little history: 15 bars, one window needs 16"):
        build_windows(as_bars(random_frame(15, 0)), W, H)
    build_windows(as_bars(random_frame(16, 0)), W, H)


def test_sequence_starts_need_consecutive_days_with_returns():
    ends = np.r_[np.arange(10, 20), np.arange(30, 33)]
    np.testing.assert_array_equal(sequence_starts(ends, 5), np.arange(10, 16))
    np.testing.assert_array_equal(sequence_starts(ends, 3), np.r_[np.arange(10, 18), 30])
    np.testing.assert_array_equal(sequence_starts(ends, 3, n_days=33), np.arange(10, 18))
    assert sequence_starts(ends, 11).size == 0


def test_pooled_windows_gather_per_instrument():
    a = build_windows(as_bars(random_frame(60, 1)), W, H)
    b = build_windows(load_bars("goog"), W, H)
    pool = PooledWindows([a, b])
    items = np.array([[1, 500], [0, 20], [1, 40], [0, 11]])
    x = pool.inputs(items)
    np.testing.assert_array_equal(x[0], b.inputs(np.array([500]))[0])
    np.testing.assert_array_equal(x[3], a.inputs(np.array([11]))[0])
    np.testing.assert_array_equal(pool.targets(items)[1], a.targets(np.array([20]))[0])
    assert pool.masks(items)[0].tolist() == b.mask.tolist()
    split = pool.split(0.2, 0.2, H)
    for k, ws in enumerate(pool.sets):
        own = chronological_split(ws, 0.2, 0.2, H)
        np.testing.assert_array_equal(split.train[split.train[:, 0] == k, 1], own.train)
        np.testing.assert_array_equal(split.test[split.test[:, 0] == k, 1], own.test)
    with pytest.raises(ValueError, match="differ"):
        PooledWindows([a, build_windows(as_bars(random_frame(60, 2)), W + 1, H)])


def test_close_only_windows_read_zero_in_masked_columns_and_mask_what_needs_high_low():
    member = load_bars("us12:AAPL")  # a wide close table: open, high, low, volume missing
    ws = build_windows(member)
    mask = dict(zip(FEATURE_NAMES, ws.mask))
    assert mask["amplitude"] == 0 and mask["open"] == mask["high"] == mask["low"] == 0
    assert mask["close"] == mask["change"] == mask["vol_ratio"] == 1
    x = ws.inputs(ws.ends[-40:])
    masked = np.flatnonzero(ws.mask == 0)
    assert not x[..., masked].any()  # was -log(close_e) / sigma_e in the OHLC columns
    close = x[..., FEATURE_NAMES.index("close")]
    assert np.all(close[:, -1] == 0) and close.std() > 0.5  # the close path is still there


def test_amplitude_is_masked_when_only_high_or_low_is_missing():
    frame = random_frame(400, 3)
    bars = as_bars(frame.assign(low=np.nan))
    bars.present.remove("low")
    bars.missing.append("low")
    mask = dict(zip(FEATURE_NAMES, feature_mask(bars)))
    assert mask["amplitude"] == 0 and mask["low"] == 0 and mask["high"] == 1 and mask["change"] == 1
    classic = feature_mask(bars, "classic")
    assert classic[FEATURE_NAMES.index("amplitude")] == 0
