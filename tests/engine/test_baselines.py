"""Volatility baselines: causal (data after a forecast day never change it) and as their formulas say."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from engine.baselines import climatology, ewma, ewma_sigma, garch_t, log_returns
from engine.data import load_bars
from engine.evaluation import BAND_LEVELS, coverage, pit_histogram

LEVELS = (0.1, 0.5, 0.9)


@pytest.fixture(scope="module")
def spx():
    frame = load_bars("spx").frame
    return frame["close"].to_numpy(), frame.index


def test_ewma_sigma_follows_the_riskmetrics_recursion_by_hand():
    close = 100 * np.exp(np.cumsum(np.r_[0.0, np.random.default_rng(1).normal(0, 0.01, 40)]))
    r = np.diff(np.log(close))
    var = np.mean(r[:20] ** 2)  # seed: days 1..20
    expected = [var]
    for x in r[20:]:
        var = 0.94 * var + 0.06 * x * x
        expected.append(var)
    sigma = ewma_sigma(close)
    assert np.isnan(sigma[:20]).all()
    np.testing.assert_allclose(sigma[20:], np.sqrt(expected), rtol=1e-12)
    q = ewma(close, np.array([25, 30]), LEVELS, horizon=3)
    hand = sigma[30] * np.sqrt(3) * stats.norm.ppf(0.9)
    assert q.shape == (2, 3, 3) and q[1, 2, 2] == pytest.approx(hand) and q[1, 2, 1] == 0.0


def test_climatology_is_the_empirical_quantile_of_past_h_day_returns_only():
    close = 100 * np.exp(np.cumsum(np.r_[0.0, np.random.default_rng(2).normal(0, 0.01, 300)]))
    days = np.array([100, 200])
    q = climatology(close, days, LEVELS, horizon=2)
    logc = np.log(close)
    past = logc[2:201] - logc[:199]  # every 2-day return realised by day 200
    np.testing.assert_allclose(q[1, 1], np.quantile(past, LEVELS), rtol=1e-12)
    shocked = close.copy()
    shocked[150:] *= 3.0  # a jump after day 100
    np.testing.assert_array_equal(climatology(shocked, days, LEVELS, horizon=2)[0], q[0])
    assert not np.allclose(climatology(shocked, days, LEVELS, horizon=2)[1], q[1])


def test_garch_refit_is_causal_and_its_quantiles_widen_with_the_horizon(spx):
    close, dates = spx
    days = np.flatnonzero((dates >= "2009-06-01") & (dates <= "2010-06-30"))
    q = garch_t(close, dates, days, LEVELS)
    assert np.isfinite(q).all() and (np.diff(q, axis=2) > 0).all()
    assert (np.diff(q[..., 2] - q[..., 0], axis=1) > 0).all()  # the 80 % band widens with h
    shocked = close.copy()
    shocked[dates >= "2010-01-01"] *= np.exp(np.random.default_rng(3).normal(0, 0.05, (dates >= "2010-01-01").sum()))
    again = garch_t(shocked, dates, days, LEVELS)
    before = dates[days] < "2010-01-01"
    np.testing.assert_array_equal(again[before], q[before])
    assert not np.allclose(again[~before], q[~before])


def test_garch_has_no_forecast_without_enough_history(spx):
    close, dates = spx
    q = garch_t(close, dates, np.array([300, 600]), LEVELS)  # 1999-2001: fewer than 500 returns before 2000
    assert np.isnan(q[0]).all() and np.isfinite(q[1]).all()


def test_baselines_on_real_data_have_roughly_nominal_coverage(spx):
    close, dates = spx
    days = np.flatnonzero((dates >= "2009-01-01") & (dates < "2018-12-20"))
    realised = np.log(close[days[:, None] + np.arange(1, 8)] / close[days, None])
    for q in (ewma(close, days, BAND_LEVELS), garch_t(close, dates, days, BAND_LEVELS)):
        assert 0.7 < coverage(q[:, :1], realised[:, :1], BAND_LEVELS)["0.8"][0] < 0.9


def test_true_quantiles_of_normal_data_cover_nominally_and_have_a_flat_pit():
    rng = np.random.default_rng(4)
    sigma = rng.uniform(0.5, 2.0, (20000, 2))
    realised = rng.normal(0.0, sigma)
    q = sigma[..., None] * stats.norm.ppf(BAND_LEVELS)
    cover = coverage(q, realised, BAND_LEVELS)
    for band, nominal in (("0.5", 0.5), ("0.8", 0.8), ("0.9", 0.9)):
        np.testing.assert_allclose(cover[band], nominal, atol=0.015)
    hist = pit_histogram(q, realised, BAND_LEVELS)
    assert hist.shape == (2, 10)
    np.testing.assert_allclose(hist, 0.1, atol=0.015)
    too_narrow = pit_histogram(q / 2, realised, BAND_LEVELS)
    assert too_narrow[:, 0].min() > 0.2 and too_narrow[:, -1].min() > 0.2  # overconfident: U-shaped


def test_log_returns_start_with_nan():
    r = log_returns(np.array([1.0, np.e, 1.0]))
    assert np.isnan(r[0]) and r[1:] == pytest.approx([1.0, -1.0])

