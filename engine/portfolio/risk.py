"""The risk a user sees: covariance, predicted volatility and 1-day VaR, checked out of sample.

- Covariance: scikit-learn's LedoitWolf (shrinkage towards a scaled identity, the optimal intensity
  in closed form) on trailing daily returns; a day an instrument did not trade counts as 0.
- VaR from the covariance: z_level sqrt(w' Sigma w) of the next day's simple return, zero mean.
- VaR from the model's quantiles: each name's 1-day sigma from its 10-90 % forecast band,
  (q90 - q10) / (2 z_0.9), its mean from the median; names joined by the covariance's
  correlations: VaR = z sqrt(s' R s) - w' mu, s = w * sigma.
- Out of sample: a breach is a next-day return below -VaR; Kupiec's (1995) proportion-of-failures
  likelihood ratio tests the breach rate against 1 - level (chi-square, one degree of freedom).
- Exposures: the weights per instrument and the book's beta to the market (the universe's
  equal-weight index unless an index is given), betas from trailing covariances.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
from scipy.special import xlogy
from scipy.stats import chi2
from sklearn.covariance import LedoitWolf

Z_BAND = NormalDist().inv_cdf(0.9)  # the 10-90 % band of a normal spans 2 Z_BAND sigma


def ledoit_wolf(returns: np.ndarray) -> np.ndarray:
    """[N, N] shrunk covariance of daily returns [L, N] (NaN: no trade that day, counted as 0)."""
    r = np.nan_to_num(np.asarray(returns, dtype=np.float64))
    return LedoitWolf().fit(r).covariance_


def kupiec(breaches: np.ndarray, level: float = 0.95) -> dict:
    """Kupiec's proportion-of-failures test of breaches (bool [n]) against the rate 1 - level:
    {"days", "breaches", "rate", "expected_rate", "lr", "p_value"} (None without days)."""
    b = np.asarray(breaches, dtype=bool)
    n, x, p = int(b.size), int(b.sum()), 1.0 - level
    if n == 0:
        return {"days": 0, "breaches": 0, "rate": None, "expected_rate": p, "lr": None, "p_value": None}
    rate = x / n
    null = xlogy(n - x, 1.0 - p) + xlogy(x, p)
    fitted = xlogy(n - x, 1.0 - rate) + xlogy(x, rate)
    lr = max(-2.0 * (null - fitted), 0.0)
    return {"days": n, "breaches": x, "rate": rate, "expected_rate": p, "lr": float(lr),
            "p_value": float(chi2.sf(lr, 1))}


def covariance_var(weights: np.ndarray, cov: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Predicted daily volatility and VaR [D] of weights [D, N] under covariances [D, N, N]."""
    vol = np.sqrt(np.maximum(np.einsum("dn,dnm,dm->d", weights, cov, weights), 0.0))
    return vol, NormalDist().inv_cdf(level) * vol


def quantile_var(weights: np.ndarray, cov: np.ndarray, median: np.ndarray, q10: np.ndarray, q90: np.ndarray,
                 level: float = 0.95) -> np.ndarray:
    """VaR [D] from the model's 1-day log-return median and 10 % / 90 % quantiles [D, N], correlated
    by the covariances [D, N, N]; NaN on a day a held name has no quantiles (a point head)."""
    sd = np.sqrt(np.maximum(np.einsum("dnn->dn", cov), 0.0))
    corr = cov / np.where(sd > 0, sd, np.inf)[:, :, None] / np.where(sd > 0, sd, np.inf)[:, None, :]
    corr = corr + np.einsum("dn,nm->dnm", (sd == 0).astype(np.float64), np.eye(cov.shape[-1]))
    held = weights != 0
    sigma = np.where(held, (q90 - q10) / (2.0 * Z_BAND), 0.0)
    mean = np.where(held, np.expm1(median), 0.0)
    s = weights * sigma
    spread = np.sqrt(np.maximum(np.einsum("dn,dnm,dm->d", s, corr, s), 0.0))
    var = NormalDist().inv_cdf(level) * spread - (weights * mean).sum(-1)
    return np.where(np.isfinite(var), var, np.nan)


def betas(returns: pd.DataFrame, market: pd.Series, lookback: int) -> pd.DataFrame:
    """[D, N] trailing beta of each instrument to the market (returns up to and including day t)."""
    var = market.rolling(lookback, min_periods=lookback // 2).var()
    return returns.rolling(lookback, min_periods=lookback // 2).cov(market).div(var, axis=0)


def risk_report(weights: np.ndarray, cov: np.ndarray, next_returns: np.ndarray, beta: np.ndarray,
                instruments: list[str], dates: pd.DatetimeIndex, level: float = 0.95,
                quantiles: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict:
    """The risk panel's numbers. weights [D, N]: the book through the next day, decided at close t;
    cov [D, N, N]: the covariance known at t; next_returns [D]: the book's realised return on day
    t+1 (NaN at the end); beta [D, N]; quantiles: 1-day (median, q10, q90) log returns [D, N].
    Breaches and Kupiec's test for each VaR over the days with a realised next return."""
    vol, var_cov = covariance_var(weights, cov, level)
    known = np.isfinite(next_returns)
    out = {
        "level": level,
        "predicted_volatility": float(vol[-1]) * math.sqrt(252),  # annualised, today's book
        "var_covariance": float(var_cov[-1]),
        "var_model": None,
        "backtest": {"covariance": kupiec(next_returns[known] < -var_cov[known], level)},
        "exposures": {name: float(w) for name, w in zip(instruments, weights[-1])},
        "market_beta": float(np.nansum(weights[-1] * beta[-1])),
        "average_market_beta": float(np.nanmean(np.nansum(weights * beta, axis=-1))),
        "asof": f"{dates[-1]:%Y-%m-%d}",
    }
    if quantiles is not None:
        var_q = quantile_var(weights, cov, *quantiles, level=level)
        usable = known & np.isfinite(var_q)
        out["var_model"] = float(var_q[-1]) if np.isfinite(var_q[-1]) else None
        out["backtest"]["model"] = kupiec(next_returns[usable] < -var_q[usable], level)
    daily = pd.DataFrame({"volatility": vol, "var_covariance": var_cov}, index=dates)
    if quantiles is not None:
        daily["var_model"] = var_q
    out["daily"] = daily
    return out


__all__ = ["Z_BAND", "betas", "covariance_var", "kupiec", "ledoit_wolf", "quantile_var", "risk_report"]
