"""Backtest accounting and metrics against hand-built cases and a plain reference computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from engine.backtest import backtest_equity, compute_metrics, run_backtest, stitch_blocks
from engine.config import BacktestConfig

FRAME_COLUMNS = ["close", "position", "exposure", "regime", "strategy_return", "strategy_equity",
                 "benchmark_equity", "drawdown"]
NO_COST = BacktestConfig(cost_bps=0.0, slippage_bps=0.0)


def series(values, start="2020-01-01") -> pd.Series:
    return pd.Series(np.asarray(values, dtype=np.float64), index=pd.bdate_range(start, periods=len(values)))


@pytest.fixture(scope="module")
def walk() -> pd.Series:
    """A real-looking price path (SSE daily returns), 600 days."""
    raw = pd.read_csv("assets/data/sh000001_sse_composite.csv", thousands=",")["收盘"].to_numpy(dtype=float)
    return series(raw[-600:])


def reference_metrics(r, b, expo, turn, rf, dates) -> dict:
    """Straight from the definitions, one day at a time."""
    n = len(r)
    equity, peak, worst, peak_i, start_i, end_i = 1.0, 1.0, 0.0, 0, 0, 0
    curve = []
    for i, x in enumerate(r):
        equity *= 1 + x
        curve.append(equity)
        if equity >= peak:
            peak, peak_i = equity, i
        if equity / peak - 1 < worst:
            worst, start_i, end_i = equity / peak - 1, peak_i, i
    mean = lambda xs: sum(xs) / len(xs)
    sd = lambda xs: math.sqrt(sum((x - mean(xs)) ** 2 for x in xs) / (len(xs) - 1))
    ex = [x - rf / 252 for x in r]
    cagr = curve[-1] ** (252 / n) - 1
    active = [x - y for x, y in zip(r, b)]
    invested = [x for x, e in zip(r, expo) if e > 0]
    return {
        "total_return": curve[-1] - 1, "cagr": cagr, "volatility": sd(r) * math.sqrt(252),
        "sharpe": mean(ex) / sd(ex) * math.sqrt(252),
        "sortino": mean(ex) * 252 / math.sqrt(mean([min(x, 0) ** 2 for x in ex]) * 252),
        "calmar": cagr / -worst, "max_drawdown": worst,
        "max_drawdown_start": dates[start_i].strftime("%Y-%m-%d"),
        "max_drawdown_end": dates[end_i].strftime("%Y-%m-%d"),
        "information_ratio": mean(active) / sd(active) * math.sqrt(252),
        "win_rate": sum(x > 0 for x in invested) / len(invested),
        "turnover": sum(turn) / n * 252, "exposure": mean(expo),
    }


def test_every_metric_matches_a_plain_reference():
    rng = np.random.default_rng(3)
    n = 400
    r = series(rng.normal(0.0004, 0.012, n))
    b = rng.normal(0.0003, 0.011, n)
    expo = rng.integers(0, 11, n) / 10
    turn = np.abs(np.diff(expo, prepend=0.0))
    got = compute_metrics(r, b, expo, turn, risk_free=0.02)
    want = reference_metrics(r.to_numpy(), b, expo, turn, 0.02, r.index)
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, str):
            assert got[key] == value, key
        else:
            assert type(got[key]) is float and got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_metrics_never_raise_on_empty_or_flat_series():
    empty = compute_metrics(pd.Series([], dtype=float))
    flat = compute_metrics(series(np.zeros(30)), series(np.zeros(30)), np.zeros(30), np.zeros(30))
    for m in (empty, flat):
        assert m["total_return"] == 0.0 and m["max_drawdown"] == 0.0
        assert m["sharpe"] is None and m["sortino"] is None and m["win_rate"] is None


def test_constant_full_position_without_costs_is_buy_and_hold(walk):
    result = run_backtest(walk, series(np.full(len(walk), 10), "2020-01-01").set_axis(walk.index), NO_COST)
    frame = result.frame
    assert list(frame.columns[: len(FRAME_COLUMNS)]) == FRAME_COLUMNS
    np.testing.assert_allclose(frame["strategy_equity"], walk / walk.iloc[0], rtol=1e-12)
    np.testing.assert_array_equal(frame["strategy_equity"], frame["buy_and_hold_equity"])
    held = result.baselines["buy_and_hold"]
    assert {k: result.metrics[k] for k in held} == held
    assert result.metrics["probabilistic_sharpe_vs_buy_and_hold"] == pytest.approx(0.5)
    assert result.metrics["total_return"] == pytest.approx(walk.iloc[-1] / walk.iloc[0] - 1, rel=1e-12)


def test_costs_take_exactly_the_expected_amount():
    close = series([100.0, 110.0, 99.0, 99.0])
    positions = series([10, 10, 0, 0])
    c = 0.0015  # 10 bps cost + 5 bps slippage
    result = run_backtest(close, positions, BacktestConfig(cost_bps=10, slippage_bps=5))
    # buy all-in: commission on the notional bought leaves 1 / (1 + c); selling all pays c of it
    expected = [1 / (1 + c), 1.1 / (1 + c), 1.1 * 0.9 * (1 - c) / (1 + c), 1.1 * 0.9 * (1 - c) / (1 + c)]
    np.testing.assert_allclose(result.frame["strategy_equity"], expected, rtol=1e-15)
    free = run_backtest(close, positions, NO_COST).frame["strategy_equity"].iloc[-1]
    assert free * (1 - c) / (1 + c) == pytest.approx(result.frame["strategy_equity"].iloc[-1], rel=1e-15)
    assert result.metrics["turnover"] == pytest.approx((1 / (1 + c) + 1) * 252 / 4, rel=1e-12)


def test_batched_equity_matches_run_backtest_in_numpy_and_torch(walk):
    rng = np.random.default_rng(5)
    paths = rng.integers(0, 11, (6, len(walk)))
    cfg = BacktestConfig(cost_bps=7, slippage_bps=2)
    finals = [run_backtest(walk, series(p).set_axis(walk.index), cfg).frame["strategy_equity"].iloc[-1]
              for p in paths]
    returns = walk.pct_change().fillna(0.0).to_numpy()
    np.testing.assert_allclose(backtest_equity(returns, paths.astype(float), 9e-4), finals, rtol=1e-12)
    tensor = backtest_equity(torch.tensor(returns), torch.tensor(paths, dtype=torch.float64), 9e-4)
    np.testing.assert_allclose(tensor.numpy(), finals, rtol=1e-12)


def test_ashare_rules_block_a_buy_on_limit_up_and_a_sale_on_limit_down():
    close = series([10.0, 11.0, 11.5, 10.35, 10.0])  # +10 % then -10 %
    positions = series([0, 10, 10, 0, 0])
    free = run_backtest(close, positions, NO_COST).frame["position"].tolist()
    ruled = run_backtest(close, positions, BacktestConfig(cost_bps=0, ashare_rules=True)).frame
    assert free == [0, 10, 10, 0, 0]
    assert ruled["position"].tolist() == [0, 0, 10, 10, 0]
    assert ruled["exposure"].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]


def test_baselines_run_on_the_same_days(walk):
    predicted = pd.DataFrame(np.outer(walk.to_numpy(), np.linspace(1.01, 1.07, 7)), index=walk.index)
    positions = series(np.random.default_rng(0).integers(0, 11, 400)).set_axis(walk.index[200:])
    result = run_backtest(walk, positions, BacktestConfig(), predicted=predicted)
    frame = result.frame
    assert frame.index[0] == walk.index[200] and len(frame) == 400
    assert set(result.baselines) == {"buy_and_hold", "constant_5", "sma_crossover", "follow_forecast", "vol_target"}
    assert {f"pred_{h}" for h in range(1, 8)} | {f"{k}_equity" for k in result.baselines} <= set(frame)
    # a forecast of +1 % a day is several trailing sigmas: the forecast follower goes all in
    assert result.baselines["follow_forecast"]["exposure"] > 0.95
    assert set(result.per_regime) <= {"bear", "sideways", "bull"} and result.per_regime
    assert set(frame["regime"]) <= {"bear", "sideways", "bull"}


def test_walk_forward_stitches_out_of_sample_pieces(walk):
    rng = np.random.default_rng(2)
    days = walk.index
    a = pd.Series(rng.integers(0, 11, 300), index=days[100:400])
    b = pd.Series(rng.integers(0, 11, 300), index=days[300:600])
    day = lambda i: str(days[i].date())
    pieces = [(day(100), day(299), a), (day(300), day(599), b)]
    stitched = stitch_blocks(walk, pieces, BacktestConfig())
    direct = run_backtest(walk, pd.concat([a.loc[: days[299]], b]), BacktestConfig())
    pd.testing.assert_frame_equal(stitched.frame, direct.frame)
    with pytest.raises(ValueError, match="overlap"):
        stitch_blocks(walk, [(day(100), day(350), a), pieces[1]], BacktestConfig())


def test_positions_outside_0_to_10_are_refused(walk):
    with pytest.raises(ValueError, match="0..10"):
        run_backtest(walk, pd.Series(11, index=walk.index), BacktestConfig())


def test_benchmark_agrees_with_backtesting_py():
    pytest.importorskip("backtesting")
    from benchmarks.bench_backtest import main

    result = main(["--paths", "4", "--days", "1200", "--repeat", "1"])
    assert result["agree_1e6"] and result["numpy_bars_per_s"] > 0
