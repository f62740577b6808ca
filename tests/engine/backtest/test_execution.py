"""Execution: next-open and close fills, the one-bar delay, costs by side, and A-share limits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.backtest import run_backtest
from engine.backtest.ashare import board_limit, daily_limits, limit_days
from engine.backtest.run import deflate
from engine.config import FILLS, BacktestConfig
from engine.data import load_bars

NO_COST = BacktestConfig(cost_bps=0.0, slippage_bps=0.0)


def series(values, start="2020-01-01") -> pd.Series:
    return pd.Series(np.asarray(values, dtype=np.float64), index=pd.bdate_range(start, periods=len(values)))


@pytest.fixture(scope="module")
def market() -> tuple[pd.Series, pd.Series, pd.Series]:
    """Closes and opens of a random walk with overnight gaps, and sticky positions 0..10."""
    rng = np.random.default_rng(7)
    n = 300
    close = series(100 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, n))))
    opens = close.shift(1).fillna(close.iloc[0]) * np.exp(rng.normal(0, 0.006, n))
    change = rng.random(n) < 0.25
    positions = pd.Series(rng.integers(0, 11, n), index=close.index).where(change).ffill().fillna(0)
    return close, opens, positions


def shares_and_cash(close, opens, positions, buy: float, sell: float) -> np.ndarray:
    """Reference book, one day at a time: shares and cash; a decision at close t trades at open t+1
    to the exposure of post-trade equity, paying `buy` / `sell` per unit of notional."""
    c, o, w = close.to_numpy(), opens.to_numpy(), positions.to_numpy() / 10
    shares, cash, equity = 0.0, 1.0, [1.0]
    for t in range(1, len(c)):
        value, held = cash + shares * o[t], shares * o[t]
        post = (value + buy * held) / (1 + buy * w[t - 1])
        if w[t - 1] * post < held:
            post = (value - sell * held) / (1 - sell * w[t - 1])
        shares, cash = w[t - 1] * post / o[t], post - w[t - 1] * post
        equity.append(cash + shares * c[t])
    return np.array(equity)


def test_fills_are_listed_with_next_open_first_and_default():
    assert FILLS == ["next-open", "close"] and BacktestConfig().fill == "next-open"


def test_next_open_splits_each_day_into_overnight_and_session_by_hand():
    close, opens = series([10.0, 11.0, 12.0, 11.0]), series([10.0, 10.5, 12.5, 11.5])
    result = run_backtest(close, series([10, 5, 0, 0]), NO_COST, opens=opens)
    # all in at 10.5; half out at 12.5 (the overnight 11 -> 12.5 earned in full); the rest out at
    # 11.5: 0.5/10.5 shares worth 11.5 plus cash 0.5 * 12.5/10.5
    expected = [1.0, 11 / 10.5, 12.25 / 10.5, (0.5 * 11.5 + 0.5 * 12.5) / 10.5]
    np.testing.assert_allclose(result.frame["strategy_equity"], expected, rtol=1e-14)
    assert result.metrics["fill"] == "next-open" and "fill_note" not in result.metrics
    assert result.frame["position"].tolist() == [10, 5, 0, 0]
    # buy and hold under the same fill buys at the first open after the first close
    np.testing.assert_allclose(result.frame["buy_and_hold_equity"], [1.0, 11 / 10.5, 12 / 10.5, 11 / 10.5])


def test_next_open_with_commission_slippage_and_stamp_duty_matches_a_share_book(market):
    close, opens, positions = market
    cfg = BacktestConfig(cost_bps=3, slippage_bps=2, stamp_duty_bps=10)
    result = run_backtest(close, positions, cfg, opens=opens)
    want = shares_and_cash(close, opens, positions, buy=5e-4, sell=15e-4)
    np.testing.assert_allclose(result.frame["strategy_equity"], want, rtol=1e-12)


def test_close_fill_ignores_opens_and_keeps_the_close_accounting(market):
    close, opens, positions = market
    cfg = BacktestConfig(fill="close", cost_bps=7, slippage_bps=2)
    with_opens = run_backtest(close, positions, cfg, opens=opens)
    without = run_backtest(close, positions, cfg)
    pd.testing.assert_frame_equal(with_opens.frame, without.frame)
    assert with_opens.metrics["fill"] == "close" and "fill_note" not in with_opens.metrics


def test_close_only_data_fill_at_the_close_and_say_so(market):
    close, opens, positions = market
    asked = BacktestConfig(fill="next-open")
    fallback = run_backtest(close, positions, asked)
    at_close = run_backtest(close, positions, BacktestConfig(fill="close"))
    assert fallback.metrics["fill"] == "close" and "no opens" in fallback.metrics["fill_note"]
    pd.testing.assert_frame_equal(fallback.frame, at_close.frame)
    gappy = run_backtest(close, positions, asked, opens=opens.where(opens.index != opens.index[5]))
    assert gappy.metrics["fill"] == "next-open" and gappy.metrics["fill_note"].startswith("1 day")
    with pytest.raises(ValueError, match="fill"):
        run_backtest(close, positions, BacktestConfig(fill="vwap"))


def test_one_bar_delay_is_the_same_positions_one_bar_later(market):
    close, opens, positions = market
    for fill in FILLS:
        cfg = BacktestConfig(fill=fill)
        result = run_backtest(close, positions, cfg, opens=opens)
        late = run_backtest(close, positions.shift(1).fillna(0), cfg, opens=opens).metrics
        assert result.metrics["delay_1_total_return"] == pytest.approx(late["total_return"], rel=1e-12)
        assert result.metrics["delay_1_sharpe"] == pytest.approx(late["sharpe"], rel=1e-12)


def test_stamp_duty_is_charged_on_sells_only():
    close, opens = series([10.0, 10.0, 10.0, 10.0]), series([10.0, 10.0, 10.0, 10.0])
    duty = BacktestConfig(cost_bps=0, slippage_bps=0, stamp_duty_bps=50)
    bought = run_backtest(close, series([10, 10, 10, 10]), duty, opens=opens).frame["strategy_equity"]
    np.testing.assert_array_equal(bought, 1.0)
    sold = run_backtest(close, series([10, 0, 0, 0]), duty, opens=opens).frame["strategy_equity"]
    np.testing.assert_allclose(sold, [1.0, 1.0, 0.995, 0.995], rtol=1e-15)


def test_baselines_trade_with_the_same_fill_and_costs(market):
    close, opens, positions = market
    cfg = BacktestConfig(cost_bps=10)
    result = run_backtest(close, positions, cfg, opens=opens)
    hold = run_backtest(close, pd.Series(10, index=close.index), cfg, opens=opens)
    np.testing.assert_array_equal(result.frame["buy_and_hold_equity"], hold.frame["strategy_equity"])


@pytest.mark.parametrize(("name", "limit"), [
    ("SPDB 浦发银行 600000", 0.10), ("000001 平安银行", 0.10), ("sh688981", 0.20), ("300750 宁德时代", 0.20),
    ("301236", 0.20), ("*ST 国华 000004", 0.05), ("ST康美 600518", 0.05), ("STAR 688001", 0.20),
    ("830799 艾融软件", 0.30), ("430047", 0.30), ("Apple (AAPL)", 0.10),
])
def test_board_limit_by_code(name, limit):
    assert board_limit(name) == limit


def test_daily_limits_follow_the_rules_history():
    dates = pd.DatetimeIndex(["1995-06-01", "2019-06-03", "2021-06-01"])
    np.testing.assert_array_equal(daily_limits("300750", dates), [np.nan, 0.10, 0.20])
    np.testing.assert_array_equal(daily_limits("600000", dates, limit_pct=0.07), [0.07, 0.07, 0.07])


@pytest.fixture(scope="module")
def spdb() -> pd.DataFrame:
    return load_bars("spdb", adjust=False).frame


def test_spdb_limit_days_found_on_the_exchange_tick(spdb):
    close = spdb["close"].to_numpy()
    reference = spdb["close"].shift(1).to_numpy()
    up, down = limit_days(reference, close, daily_limits("SPDB 600000", spdb.index))
    ups, downs = spdb.index[up].strftime("%Y-%m-%d"), spdb.index[down].strftime("%Y-%m-%d")
    assert len(ups) == 18 and len(downs) == 8
    # +9.98 % (14.83 -> 16.31) and +9.976 % are limit-ups only after rounding to 0.01
    assert {"2001-10-23", "2009-03-04", "2008-08-20", "2008-10-13"} <= set(ups)
    assert {"2008-09-16", "2008-10-06", "2008-02-20", "2015-01-19"} <= set(downs)
    # an ex-rights drop beyond the band (18.40 -> 12.31) is not a limit day; nor is a near miss
    assert "2002-08-22" not in set(downs) and "2008-10-28" not in set(ups)


def test_ashare_rules_block_trades_at_a_limit_open(spdb):
    # SPDB opened at limit-up on 2001-10-23: a buy decided the evening before cannot fill
    days = spdb.loc["2001-10-19":"2001-10-25"]
    positions = pd.Series([0, 10, 10, 10, 10], index=days.index)
    ruled = BacktestConfig(ashare_rules=True, cost_bps=0)
    result = run_backtest(days["close"], positions, ruled, opens=days["open"], instrument="600000")
    assert days.index[2] == pd.Timestamp("2001-10-23")
    assert result.frame["position"].tolist() == [0, 0, 10, 10, 10]
    free = run_backtest(days["close"], positions, NO_COST, opens=days["open"]).frame["position"]
    assert free.tolist() == [0, 10, 10, 10, 10]


def test_deflate_adds_the_deflated_sharpe_only_after_several_trials(market):
    close, opens, positions = market
    result = run_backtest(close, positions, BacktestConfig(), opens=opens)
    assert "deflated_sharpe" not in deflate(result, []).metrics
    deflated = deflate(result, [0.3, 0.9]).metrics
    assert deflated["trials"] == 3 and 0.0 <= deflated["deflated_sharpe"] <= 1.0
    assert set(result.metrics["sharpe_ci"]) and len(result.metrics["sharpe_ci"]) == 2


def test_next_open_agrees_with_backtesting_py_market_orders():
    """backtesting.py fills a market order placed after close t at open t+1 (trade_on_close=False),
    with its own cash, commission and share bookkeeping; sizing aims at the engine's target exposure
    of post-trade equity at that open."""
    pytest.importorskip("backtesting")
    import warnings

    from backtesting import Backtest, Strategy

    from benchmarks.bench_backtest import CASH, COST, random_positions

    bars = load_bars("sse").frame.iloc[-800:]
    close, opens = bars["close"], bars["open"]
    decided = random_positions(1, len(bars), seed=4)[0]
    weights, o = decided / 10.0, opens.to_numpy()

    class NextOpen(Strategy):
        def init(self):
            pass

        def next(self):
            i = len(self.data) - 1
            if i + 1 >= len(o):
                return
            size = self.position.size
            pre = self.equity + size * (o[i + 1] - self.data.Close[-1])  # the book at the next open
            held, w = size * o[i + 1] / pre, weights[i]
            sign = 1.0 if w >= held else -1.0
            post = pre * (1 + sign * COST * held) / (1 + sign * COST * w)
            delta = round(w * post / o[i + 1] - size)
            if delta > 0:
                self.buy(size=delta)
            elif delta < 0:
                self.sell(size=-delta)

    ohlc = pd.DataFrame({"Open": opens, "High": bars[["open", "close"]].max(axis=1),
                         "Low": bars[["open", "close"]].min(axis=1), "Close": close})
    bt = Backtest(ohlc, NextOpen, cash=CASH, commission=COST, margin=0.5, trade_on_close=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = float(bt.run()["Equity Final [$]"]) / CASH
    cfg = BacktestConfig(cost_bps=COST * 1e4, slippage_bps=0.0)
    ours = run_backtest(close, pd.Series(decided, index=bars.index), cfg, opens=opens)
    assert ours.metrics["fill"] == "next-open"
    assert ours.frame["strategy_equity"].iloc[-1] == pytest.approx(theirs, abs=1e-6)
