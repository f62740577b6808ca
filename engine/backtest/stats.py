"""How far a backtest's Sharpe ratio can be trusted: an interval, and the probability it beats a bar.

A Sharpe ratio from a few hundred noisy days is an estimate, not a fact. This module gives three
answers, all from the daily excess returns r (risk-free / 252 subtracted), Sharpe annualised by
sqrt(252) as in metrics.py:

- sharpe_interval: a 95 % interval from the stationary block bootstrap (Politis & Romano), the
  block length from Politis & White (2004, Patton et al. 2009 correction), both from `arch`;
  blocks keep volatility clustering that an iid resample would destroy. Seeded: the same
  returns always give the same interval.
- probabilistic_sharpe (Bailey & López de Prado 2012): P(true Sharpe > SR*) given n days,
  skewness g3 and kurtosis g4 of r, with the per-day ratios sr = SR / sqrt(252):
  PSR = Phi((sr - sr*) sqrt(n - 1) / sqrt(1 - g3 sr + (g4 - 1) / 4 sr^2)).
- deflated_sharpe (Bailey & López de Prado 2014): PSR against the Sharpe the best of N trials
  would show by luck alone, SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))),
  V the variance of the trials' Sharpe ratios, gamma the Euler-Mascheroni constant. The trials
  are the backtests recorded on the same data (recorded_sharpes).

Undefined answers (too few days, no spread) are None, never a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
from arch.bootstrap import StationaryBootstrap, optimal_block_length

from engine.backtest.metrics import DAYS

if TYPE_CHECKING:
    from engine.store import RunStore

LEVEL = 0.95
REPS = 1000  # bootstrap resamples: the interval's ends move by ~0.01 Sharpe between seeds
SEED = 0
MIN_DAYS = 10  # fewer days give no meaningful interval or probability
EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def _excess(returns: np.ndarray, risk_free: float) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    return r[np.isfinite(r)] - risk_free / DAYS


def _annual_sharpe(r: np.ndarray) -> float:
    sd = r.std(ddof=1)
    return float(r.mean() / sd * math.sqrt(DAYS)) if sd > 0 else float("nan")


def sharpe_interval(returns: np.ndarray, risk_free: float = 0.0, *, level: float = LEVEL,
                    reps: int = REPS, seed: int = SEED) -> list[float] | None:
    """[low, high] percentile interval of the annualised Sharpe ratio (stationary bootstrap)."""
    r = _excess(returns, risk_free)
    if r.size < MIN_DAYS or not r.std(ddof=1) > 0:
        return None
    block = max(1.0, float(optimal_block_length(r)["stationary"].iloc[0]))
    bootstrap = StationaryBootstrap(block, r, seed=np.random.default_rng(seed))
    ci = bootstrap.conf_int(_annual_sharpe, reps=reps, method="percentile", size=level)
    low, high = (float(x) for x in np.ravel(ci))
    return [low, high] if math.isfinite(low) and math.isfinite(high) else None


def probabilistic_sharpe(returns: np.ndarray, benchmark_sharpe: float = 0.0,
                         risk_free: float = 0.0) -> float | None:
    """P(true annualised Sharpe > benchmark_sharpe), from n, skewness and kurtosis of returns."""
    r = _excess(returns, risk_free)
    sd = r.std(ddof=1) if r.size > 1 else 0.0
    if r.size < MIN_DAYS or not sd > 0 or not math.isfinite(benchmark_sharpe):
        return None
    sr, target = r.mean() / sd, benchmark_sharpe / math.sqrt(DAYS)
    z = (r - r.mean()) / r.std()
    skew, kurt = float(np.mean(z ** 3)), float(np.mean(z ** 4))
    spread = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr ** 2
    if not spread > 0:
        return None
    return float(_NORMAL.cdf((sr - target) * math.sqrt(r.size - 1) / math.sqrt(spread)))


def expected_max_sharpe(n_trials: int, trials_sharpe_var: float) -> float:
    """Annualised Sharpe the best of n_trials skill-less trials shows (their Sharpe variance given)."""
    if n_trials < 2 or not trials_sharpe_var > 0:
        return 0.0
    e = math.e
    return math.sqrt(trials_sharpe_var) * ((1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / n_trials)
                                           + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (n_trials * e)))


def deflated_sharpe(returns: np.ndarray, n_trials: int, trials_sharpe_var: float,
                    risk_free: float = 0.0) -> float | None:
    """PSR against the best Sharpe luck gives among n_trials (trials_sharpe_var: variance of the
    trials' annualised Sharpe ratios)."""
    return probabilistic_sharpe(returns, expected_max_sharpe(n_trials, trials_sharpe_var), risk_free)


def sharpe_statistics(returns: np.ndarray, risk_free: float = 0.0, *,
                      trials: Sequence[float] | None = None) -> dict:
    """The metrics keys sharpe_ci and probabilistic_sharpe (against 0); with trials (the
    annualised Sharpe ratios of every backtest tried on the same data, this one included, at
    least two) also deflated_sharpe and the number of trials."""
    out: dict = {"sharpe_ci": sharpe_interval(returns, risk_free),
                 "probabilistic_sharpe": probabilistic_sharpe(returns, 0.0, risk_free)}
    finite = np.asarray([s for s in trials or () if s is not None and math.isfinite(s)], dtype=np.float64)
    if finite.size >= 2:
        out["deflated_sharpe"] = deflated_sharpe(returns, int(finite.size), float(finite.var(ddof=1)),
                                                 risk_free)
        out["trials"] = int(finite.size)
    return out


def recorded_sharpes(store: RunStore, fingerprint: str) -> list[float]:
    """Sharpe ratios of the backtests already recorded on data with this fingerprint (the trials a
    new backtest on the same data is one more of); reads two small JSON fields, not the frames."""
    rows = store.db.query("SELECT json_extract(metrics, '$.sharpe') AS sharpe FROM backtests "
                          "WHERE json_extract(config, '$.fingerprint') = ?", [fingerprint])
    return [float(row["sharpe"]) for row in rows if row["sharpe"] is not None]


__all__ = [
    "deflated_sharpe",
    "expected_max_sharpe",
    "probabilistic_sharpe",
    "recorded_sharpes",
    "sharpe_interval",
    "sharpe_statistics",
]
