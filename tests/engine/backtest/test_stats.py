"""Sharpe intervals and probabilities against simulations and independent formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from engine.backtest.stats import (
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    recorded_sharpes,
    sharpe_interval,
    sharpe_statistics,
)
from engine.store import RunStore

SIGMA = 0.01


def daily(true_sharpe: float, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(true_sharpe / math.sqrt(252) * SIGMA, SIGMA, n)


def test_bootstrap_interval_covers_the_true_sharpe_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    true, sims = 1.0, 200
    hits = 0
    for _ in range(sims):
        low, high = sharpe_interval(daily(true, 250, rng), reps=300)
        hits += low <= true <= high
    assert 0.88 <= hits / sims <= 0.99


def test_interval_is_reproducible_and_brackets_the_estimate():
    r = daily(1.5, 500, np.random.default_rng(3))
    first, again = sharpe_interval(r), sharpe_interval(r)
    assert first == again
    estimate = r.mean() / r.std(ddof=1) * math.sqrt(252)
    assert first[0] < estimate < first[1]
    assert sharpe_interval(np.zeros(100)) is None and sharpe_interval(r[:5]) is None


def test_probabilistic_sharpe_matches_the_formula_and_is_half_at_the_observed_sharpe():
    rng = np.random.default_rng(5)
    r = rng.standard_t(5, 750) * 0.01 + 0.0006  # fat tails: the kurtosis term matters
    observed = r.mean() / r.std(ddof=1) * math.sqrt(252)
    assert probabilistic_sharpe(r, observed) == pytest.approx(0.5, abs=1e-12)
    sr = r.mean() / r.std(ddof=1)
    spread = 1 - sps.skew(r) * sr + (sps.kurtosis(r, fisher=False) - 1) / 4 * sr ** 2
    want = sps.norm.cdf(sr * math.sqrt(len(r) - 1) / math.sqrt(spread))
    assert probabilistic_sharpe(r) == pytest.approx(want, rel=1e-9)
    bars = [probabilistic_sharpe(r, b) for b in np.linspace(-2, 4, 13)]
    assert all(a > b for a, b in zip(bars, bars[1:]))
    assert probabilistic_sharpe(r, risk_free=0.05) < probabilistic_sharpe(r)


def test_expected_max_sharpe_matches_the_maximum_of_simulated_trials():
    rng = np.random.default_rng(0)
    trials, var = 100, 0.25
    simulated = rng.normal(0, math.sqrt(var), (20000, trials)).max(axis=1).mean()
    assert expected_max_sharpe(trials, var) == pytest.approx(simulated, rel=0.03)
    assert expected_max_sharpe(1, var) == 0.0 and expected_max_sharpe(10, 0.0) == 0.0


def test_deflated_sharpe_falls_with_more_trials():
    r = daily(1.5, 1000, np.random.default_rng(9))
    deflated = [deflated_sharpe(r, n, 0.5) for n in (2, 10, 100, 1000)]
    assert deflated[0] < probabilistic_sharpe(r)
    assert all(a > b for a, b in zip(deflated, deflated[1:]))
    assert deflated_sharpe(r, 5, 0.0) == probabilistic_sharpe(r)


def test_statistics_deflate_only_with_two_or_more_trials():
    r = daily(1.0, 300, np.random.default_rng(1))
    assert set(sharpe_statistics(r)) == {"sharpe_ci", "probabilistic_sharpe"}
    assert "deflated_sharpe" not in sharpe_statistics(r, trials=[0.8])
    tried = sharpe_statistics(r, trials=[0.2, 1.1, None, 0.7])
    assert tried["trials"] == 3
    assert tried["deflated_sharpe"] == deflated_sharpe(r, 3, float(np.var([0.2, 1.1, 0.7], ddof=1)))


def test_recorded_sharpes_are_the_backtests_on_the_same_data(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    for fingerprint, sharpe in (("abc", 0.5), ("abc", 1.2), ("xyz", 3.0), ("abc", None)):
        store.add_backtest(None, dataset="d", config={"fingerprint": fingerprint},
                           metrics={"sharpe": sharpe}, baselines={}, frame_json="{}")
    store.add_backtest(None, dataset="d", config={}, metrics={"sharpe": 9.0}, baselines={}, frame_json="{}")
    assert sorted(recorded_sharpes(store, "abc")) == [0.5, 1.2]
    assert recorded_sharpes(store, "none") == []
