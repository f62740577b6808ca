"""The volatility-target and analytic baselines against hand computations, on the backtest's tape."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from engine.backtest import run_backtest
from engine.backtest.run import NO_DISTRIBUTION, analytic_positions, banded, vol_target_positions
from engine.config import BacktestConfig


def walk(n: int = 80, daily: float = 0.012, seed: int = 7) -> pd.Series:
    r = np.random.default_rng(seed).normal(0.0004, daily, n)
    return pd.Series(100 * np.exp(np.cumsum(r)), index=pd.bdate_range("2021-01-04", periods=n))


def test_vol_target_by_hand():
    close = walk()
    r = np.diff(np.log(close.to_numpy()))
    var = np.mean(r[:20] ** 2)
    hand = [0] * 20 + [round(10 * min(1.0, 0.10 / math.sqrt(var * 252)))]
    for x in r[20:]:
        var = 0.94 * var + 0.06 * x * x
        hand.append(round(10 * min(1.0, 0.10 / math.sqrt(var * 252))))
    got = vol_target_positions(close)
    assert got.tolist() == hand
    assert 0 < got.iloc[20:].mean() < 10  # ~19 % vol: about half invested


def test_no_trade_band_by_hand():
    targets = np.array([1, 2, 3, 3, 1, np.nan, 5, 4, 6, 10, 9, 0, 1])
    held, out = 0, []
    for t in targets:
        if np.isfinite(t) and abs(t - held) >= 2:
            held = int(t)
        out.append(held)
    assert banded(targets).tolist() == out == [0, 2, 2, 2, 2, 2, 5, 5, 5, 10, 10, 0, 0]
    rng = np.random.default_rng(1)
    many = rng.integers(0, 11, 1000).astype(float)
    held, loop = 0, []
    for t in many:
        held = int(t) if abs(t - held) >= 3 else held
        loop.append(held)
    assert banded(many, band=3).tolist() == loop


def test_analytic_fraction_by_hand():
    days = pd.bdate_range("2022-01-03", periods=4)
    dist = pd.DataFrame({"median": [0.0004, 0.0001, -0.001, 0.00005], "sigma": [0.01, 0.01, 0.02, 0.005]}, index=days)
    # fractions 0.0004 / (2 * 1e-4) -> 1, 0.5, 0 (clipped), 0.00005 / (2 * 2.5e-5) = 1 -> 10, 5, 0, 10
    assert analytic_positions(dist).tolist() == [10, 5, 0, 10]
    assert analytic_positions(dist.iloc[[1]], band=2).tolist() == [5]


def test_backtest_carries_both_baselines_on_the_same_tape_and_costs():
    close = walk(300)
    opens = close.shift(1).fillna(close.iloc[0]) * 1.001
    positions = pd.Series(5, index=close.index[100:])
    dist = pd.DataFrame({"median": np.sin(np.arange(200) / 9) * 0.001, "sigma": 0.012}, index=close.index[100:])
    cfg = BacktestConfig(cost_bps=10, risk_aversion=5.0)  # the analytic policy reads its lambda from the config
    result = run_backtest(close, positions, cfg, opens=opens, distribution=dist)
    assert {"vol_target", "analytic"} <= set(result.baselines) and "baseline_notes" not in result.metrics
    assert not np.array_equal(analytic_positions(dist, 5.0), analytic_positions(dist))
    for name, path in (("vol_target", vol_target_positions(close).loc[positions.index]),
                       ("analytic", analytic_positions(dist, 5.0))):
        alone = run_backtest(close, path, cfg, opens=opens)  # the baseline's path as a strategy
        np.testing.assert_allclose(result.frame[f"{name}_equity"], alone.frame["strategy_equity"], rtol=1e-12)
        assert result.baselines[name]["sharpe"] == pytest.approx(alone.metrics["sharpe"])
    assert result.baselines["analytic"]["turnover"] > 0


def test_without_a_distribution_the_analytic_baseline_is_left_out_with_a_note():
    close = walk(120)
    result = run_backtest(close, pd.Series(10, index=close.index[40:]), BacktestConfig())
    assert "analytic" not in result.baselines and "analytic_equity" not in result.frame
    assert result.metrics["baseline_notes"] == {"analytic": NO_DISTRIBUTION}
    assert "vol_target" in result.baselines
