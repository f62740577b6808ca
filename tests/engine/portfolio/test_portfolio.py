"""Portfolio kernel: constraints, accounting against an independent recomputation from the exported
CSV, the 1/N baseline by hand, Ledoit-Wolf against its formula, the fallback, Kupiec's test."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.covariance import LedoitWolf

from engine.config import BacktestConfig
from engine.data import load_bars
from engine.data.universe import load_universe
from engine.portfolio import (
    Forecasts,
    Market,
    PortfolioConfig,
    PortfolioWarning,
    export_portfolio_signals,
    kupiec,
    ledoit_wolf,
    portfolio_backtest,
    portfolio_signals,
)
from engine.portfolio.backtest import trade, trailing_vol
from engine.portfolio.construct import mean_variance, optimised_or_fallback, robust_weights
from engine.portfolio.risk import covariance_var

Z90 = 1.2815515655446004


def trend_forecasts(market: Market, first: int, horizon: int = 7) -> Forecasts:
    """A causal, naive forecast from real closes: the trailing 20-day drift, bands from a 60-day vol."""
    drift = pd.DataFrame(np.log(market.close)).diff(20).to_numpy() / 20
    sigma = trailing_vol(market, 60)
    h = np.arange(1, horizon + 1)
    median = drift[..., None] * h
    spread = Z90 * sigma[..., None] * np.sqrt(h)
    out = [median, median - spread, median + spread]
    for a in out:
        a[:first] = np.nan
    return Forecasts(*out)


@pytest.fixture(scope="module")
def us12() -> Market:
    m = Market.from_tables(load_universe("us12").tables)
    keep = m.dates >= pd.Timestamp("2018-06-01")
    return Market(m.dates[keep], m.instruments, m.close[keep], None)


@pytest.fixture(scope="module")
def with_opens() -> Market:
    """Three bundled series with opens, on the days all three traded (next-open fills)."""
    m = Market.from_tables([load_bars(name) for name in ("aapl", "goog", "spx")])
    keep = (m.dates >= pd.Timestamp("2009-01-01")) & np.isfinite(m.close).all(-1) & np.isfinite(m.open).all(-1)
    return Market(m.dates[keep], m.instruments, m.close[keep], m.open[keep])


@pytest.mark.parametrize("method", ["topk", "inverse_vol", "score", "mean_variance"])
def test_weights_are_long_only_bounded_and_sum_to_at_most_one(us12, method):
    pcfg = PortfolioConfig(method=method, top_k=4, max_weight=0.3, min_cash=0.05, rebalance=10, band=0.15)
    result = portfolio_backtest(us12, trend_forecasts(us12, 300), pcfg, BacktestConfig(cost_bps=10))
    targets = result.targets.to_numpy()
    decided = targets[np.isfinite(targets).all(-1)]
    assert len(decided) > 20
    assert (decided >= -1e-12).all() and (decided <= 0.3 + 1e-9).all()
    assert (decided.sum(-1) <= 0.95 + 1e-9).all()
    assert (result.weights.to_numpy().sum(-1) <= 1.0 + 1e-9).all()
    assert result.metrics["fill"] == "close" and "no opens" in result.metrics["fill_note"]  # us12: closes only
    assert set(result.baselines) == {"equal_weight", "inverse_vol", "momentum", "index"}


def recompute(csv: pd.DataFrame, market: Market, buy: float, sell: float) -> np.ndarray:
    """Equity from the exported weights alone, in weight space (not units): overnight drift, trade at
    the open with costs f = 1 - sum c |w f - d| solved by iteration, then the session."""
    weights = csv.pivot(index="date", columns="instrument", values="weight")[market.instruments]
    rebalance = csv.groupby("date")["rebalance"].first()
    dates = pd.DatetimeIndex(weights.index)
    span = market.dates.get_indexer(dates)
    x, equity, out = np.zeros(len(market.instruments)), 1.0, []
    for i, t in enumerate(span):
        if i > 0 and rebalance.iloc[i - 1] == 1:  # yesterday's close decided: trade at today's open
            a = market.open[t] / market.close[t - 1] - 1
            g = 1 + x @ a
            d, equity = x * (1 + a) / g, equity * g
            w, f = weights.iloc[i - 1].to_numpy(), 1.0
            for _ in range(50):
                c = np.where(w * f > d, buy, sell)
                f = 1 - np.sum(c * np.abs(w * f - d))
            s = market.close[t] / market.open[t] - 1
            equity *= f * (1 + w @ s)
            x = w * (1 + s) / (1 + w @ s)
        elif i > 0:
            r = market.close[t] / market.close[t - 1] - 1
            equity *= 1 + x @ r
            x = x * (1 + r) / (1 + x @ r)
        out.append(equity)
    return np.array(out)


def test_equity_matches_an_independent_recomputation_from_the_exported_weights(with_opens, tmp_path):
    forecasts = trend_forecasts(with_opens, 80)
    cfg = BacktestConfig(cost_bps=20, slippage_bps=5, stamp_duty_bps=10)
    result = portfolio_backtest(with_opens, forecasts, PortfolioConfig(method="score", top_k=2, rebalance=3,
                                                                       band=0.05), cfg)
    assert result.metrics["fill"] == "next-open" and result.metrics["costs"] > 0
    path = tmp_path / "portfolio.csv"
    rows = export_portfolio_signals(portfolio_signals(result, with_opens, forecasts), path,
                                    run_id="=run", checkpoint_sha="abc")
    csv = pd.read_csv(path, encoding="utf-8-sig")
    assert rows == len(csv) == 3 * len(result.frame)
    assert list(csv.columns[:3]) == ["date", "instrument", "weight"] and csv.columns[-1] == "checkpoint_sha256"
    assert (csv["run_id"] == "'=run").all()  # formula-safe
    equity = recompute(csv, with_opens, 25e-4, 35e-4)
    np.testing.assert_allclose(equity, result.frame["equity"].to_numpy(), rtol=1e-9)


def test_equal_weight_baseline_against_a_hand_computation(us12):
    pcfg = PortfolioConfig(rebalance=1)
    result = portfolio_backtest(us12, trend_forecasts(us12, 300), pcfg, BacktestConfig(cost_bps=0, fill="close"))
    span = us12.dates.get_indexer(result.frame.index)
    r = us12.close[span[1:]] / us12.close[span[:-1]] - 1  # every us12 name trades on these days
    hand = np.concatenate([[1.0], np.cumprod(1 + r.mean(-1))])
    np.testing.assert_allclose(result.frame["equal_weight_equity"].to_numpy(), hand, rtol=1e-10)
    assert result.baselines["equal_weight"]["total_return"] == pytest.approx(hand[-1] - 1, rel=1e-10)


def test_ledoit_wolf_matches_the_formula_and_the_library(us12):
    r = us12.returns()[-250:]
    got = ledoit_wolf(r)
    x = r - r.mean(0)
    n, p = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / p
    delta = np.sum((s - mu * np.eye(p)) ** 2) / p
    beta = min(np.sum([np.sum((np.outer(row, row) - s) ** 2) for row in x]) / n**2 / p, delta)
    shrink = beta / delta
    np.testing.assert_allclose(got, shrink * mu * np.eye(p) + (1 - shrink) * s, rtol=1e-10)
    np.testing.assert_allclose(got, LedoitWolf().fit(r).covariance_, rtol=1e-12)


def test_an_infeasible_constraint_set_falls_back_with_a_warning(us12):
    pcfg = PortfolioConfig(method="mean_variance", top_k=3, max_weight=0.05, max_cash=0.0)  # 12 x 5 % < 100 %
    mu = np.full(12, 1e-3)
    cov = ledoit_wolf(us12.returns()[-120:])
    assert mean_variance(mu, cov, np.zeros(12), pcfg)[0] is None
    with pytest.warns(PortfolioWarning, match="no portfolio"):
        w, note = optimised_or_fallback(mu, cov, np.zeros(12), np.arange(12.0), pcfg)
    assert note and (w <= 0.05 + 1e-12).all() and np.count_nonzero(w) == 3
    with warnings.catch_warnings(record=True) as caught:
        result = portfolio_backtest(us12, trend_forecasts(us12, 400), pcfg, BacktestConfig())
    assert result.metrics["fallbacks"] > 0 and len(result.notes) == result.metrics["fallbacks"]
    assert any(issubclass(c.category, PortfolioWarning) for c in caught)


def test_mean_variance_respects_turnover_and_prefers_the_better_name():
    cov = np.diag([1e-4, 1e-4, 4e-4])
    pcfg = PortfolioConfig(method="mean_variance", max_weight=0.6, max_turnover=0.5, risk_aversion=5)
    held = np.array([0.0, 0.5, 0.5])
    w, why = mean_variance(np.array([2e-3, 1e-4, 1e-4]), cov, held, pcfg)
    assert why is None and np.abs(w - held).sum() <= 0.5 + 1e-6 and w[0] > 0.2 and w.sum() <= 1 + 1e-9


def test_kupiec_accepts_a_correct_var_and_rejects_a_wrong_one():
    rng = np.random.default_rng(7)
    returns = rng.standard_normal((200, 500)) * 0.01
    correct = [kupiec(r < -1.6448536 * 0.01)["p_value"] < 0.05 for r in returns]
    wrong = [kupiec(r < -0.8 * 0.01)["p_value"] < 0.05 for r in returns]
    assert np.mean(correct) < 0.10 and np.mean(wrong) > 0.95
    hand = kupiec(np.arange(250) < 20)  # 20 breaches in 250 days against 5 %
    lr = -2 * (230 * np.log(0.95) + 20 * np.log(0.05) - 230 * np.log(230 / 250) - 20 * np.log(20 / 250))
    assert hand["lr"] == pytest.approx(lr) and hand["rate"] == 0.08


def test_covariance_var_of_one_name_is_z_sigma():
    vol, var = covariance_var(np.array([[0.5]]), np.array([[[4e-4]]]), 0.95)
    assert vol[0] == pytest.approx(0.01) and var[0] == pytest.approx(1.6448536 * 0.01)


def test_ashare_limits_freeze_a_name_and_robust_weights_cap():
    units = np.array([10.0, 0.0])
    new, cash, traded, _ = trade(units, 0.0, np.array([0.0, 1.0]), np.array([10.0, 5.0]),
                                     up=np.array([False, True]), down=np.array([True, False]),
                                     buy=np.full(2, 1e-3), sell=np.full(2, 2e-3))
    assert new[0] == 10.0 and new[1] == 0.0 and cash == 0.0 and traded == 0.0  # no sell at limit-down, no buy at up
    w = robust_weights("score", np.array([[5.0, 1.0, 1.0, np.nan]]), np.ones((1, 4)),
                       PortfolioConfig(top_k=3, max_weight=0.4))
    np.testing.assert_allclose(w, [[0.4, 0.3, 0.3, 0.0]])
