"""How far a backtest's Sharpe ratio can be trusted: an interval, and the probability it beats a bar.

A Sharpe ratio from a few hundred noisy days is an estimate, not a fact. This module gives three
answers, all from the daily excess returns r (risk-free / 252 subtracted), Sharpe annualised by
sqrt(252) as in metrics.py:

- sharpe_interval: a 95 % interval from the stationary block bootstrap (Politis & Romano), the
  block length from Politis & White (2004, Patton et al. 2009 correction) by `arch`, the resamples
  drawn all at once as arch's StationaryBootstrap defines them (stationary_bootstrap_indices);
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
from arch.bootstrap import optimal_block_length

from engine.backtest.metrics import DAYS

if TYPE_CHECKING:
    from engine.store import RunStore

LEVEL = 0.95
REPS = 1000  # bootstrap resamples: the interval's ends move by ~0.01 Sharpe between seeds
CHUNK = 2_000_000  # resampled days held in memory at once (a long walk-forward: resamples in chunks)
SEED = 0
MIN_DAYS = 10  # fewer days give no meaningful interval or probability
EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


def _excess(returns: np.ndarray, risk_free: float) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    return r[np.isfinite(r)] - risk_free / DAYS


def stationary_bootstrap_indices(n: int, reps: int, block: float, rng: np.random.Generator) -> np.ndarray:
    """[reps, n] resample indices of the stationary bootstrap, as arch's StationaryBootstrap draws
    them one resample at a time (arch.bootstrap.base.StationaryBootstrap.update_indices and
    _samplers.stationary_bootstrap_sample): a uniform start in [0, n) for every day, and day i
    continues the block of day i - 1 (index + 1, wrapping n to 0) unless a uniform u_i <= 1 / block
    starts a new one, so block lengths are geometric with mean `block`. Vectorised: each day's index
    is the start of its block plus the days since that start, mod n (day-major inside: numpy
    accumulates fastest along the first axis)."""
    starts = rng.integers(n, size=(n, reps), dtype=np.int64)
    fresh = rng.random((n, reps)) <= 1.0 / block
    fresh[0] = True
    day = np.arange(n)[:, None]
    began = np.maximum.accumulate(np.where(fresh, day, 0), axis=0)  # day the block of day i began
    index = np.take_along_axis(starts, began, axis=0) + (day - began)
    index[index >= n] -= n  # below 2 n: a wrap is one subtraction
    return index.T


def sharpe_interval(returns: np.ndarray, risk_free: float = 0.0, *, level: float = LEVEL,
                    reps: int = REPS, seed: int = SEED) -> list[float] | None:
    """[low, high] percentile interval of the annualised Sharpe ratio (stationary bootstrap): the
    Sharpe ratios of all resamples computed together, their percentiles as arch's conf_int takes them."""
    r = _excess(returns, risk_free)
    if r.size < MIN_DAYS or not r.std(ddof=1) > 0:
        return None
    block = max(1.0, float(optimal_block_length(r)["stationary"].iloc[0]))
    rng = np.random.default_rng(seed)
    rows = max(1, CHUNK // r.size)
    sharpes = []
    for done in range(0, reps, rows):  # chunks of resamples, not one at a time
        sample = r[stationary_bootstrap_indices(r.size, min(rows, reps - done), block, rng)]
        sd = sample.std(axis=1, ddof=1)
        sharpes.append(np.divide(sample.mean(axis=1) * math.sqrt(DAYS), sd, out=np.full(sd.shape, np.nan),
                                 where=sd > 0))
    tail = 100 * (1 - level) / 2
    low, high = (float(x) for x in np.percentile(np.concatenate(sharpes), [tail, 100 - tail]))
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
    "stationary_bootstrap_indices",
]
