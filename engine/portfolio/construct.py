"""From per-instrument forecasts to target weights: robust rules first, mean-variance on top.

Across 14 optimisers none consistently beat 1/N out of sample (DeMiguel, Garlappi & Uppal 2009),
so the robust rules are the defaults and the baselines; mean-variance earns its place by beating
them on the same days. All rules are long-only with weights summing to at most 1 - min_cash (the
rest is cash, earning 0) and at most max_weight each.

- topk: equal weight on the k best scores of the day (instruments with a finite score only).
- inverse_vol: the same k names weighted by 1 / trailing volatility.
- score: the k names weighted by their positive score (no positive score: cash).
- mean_variance: maximise mu'w - lambda/2 w' Sigma w (Sigma: Ledoit-Wolf, risk.py) under
  0 <= w <= max_weight, 1 - max_cash <= sum w <= 1 - min_cash and sum |w - held| <= max_turnover,
  solved by scipy's SLSQP after a linprog feasibility check; an infeasible or failed problem falls
  back to topk with a PortfolioWarning, never an exception.

The robust rules are vectorised over days x instruments; the optimiser runs once per decision.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog, minimize

METHODS = ("topk", "inverse_vol", "score", "mean_variance")
TOLERANCE = 1e-7  # constraint slack accepted from the solver


class PortfolioWarning(UserWarning):
    """A construction that could not be done as asked and fell back to the robust rule."""


@dataclass
class PortfolioConfig:
    """How forecasts become weights, and how often (the accounting rules live in BacktestConfig)."""

    method: str = "topk"  # one of METHODS
    top_k: int = 5
    rebalance: int = 5  # trading days between decisions
    band: float | None = None  # also rebalance when a weight drifts further than this from its target
    max_weight: float = 1.0
    min_cash: float = 0.0  # at least this share of equity in cash
    max_cash: float = 1.0  # at most this share in cash (mean_variance only: the robust rules stay invested)
    max_turnover: float | None = None  # sum |w - held| per decision (mean_variance only)
    risk_aversion: float = 5.0  # lambda in mu'w - lambda/2 w' Sigma w, daily units
    lookback: int = 120  # trading days of returns behind volatilities and the covariance
    momentum: tuple[int, int] = (252, 21)  # the 12-1 momentum baseline: return from t-252 to t-21
    var_level: float = 0.95

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.top_k < 1 or self.rebalance < 1:
            raise ValueError("top_k and rebalance must be at least 1")
        if not 0 < self.max_weight <= 1 or not 0 <= self.min_cash <= self.max_cash <= 1:
            raise ValueError("need 0 < max_weight <= 1 and 0 <= min_cash <= max_cash <= 1")


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """[D, N] True for the k highest finite scores of each day (ties: the earlier instrument)."""
    finite = np.isfinite(scores)
    order = np.argsort(np.where(finite, -scores, np.inf), axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[-1]), axis=-1)
    return finite & (ranks < k)


def cap_weights(weights: np.ndarray, cap: float) -> np.ndarray:
    """Weights [D, N] capped at `cap`, the excess handed to the uncapped names in proportion (water
    filling); what no name can take stays in cash. Each pass caps at least one more name per day."""
    w = np.array(weights, dtype=np.float64)
    for _ in range(w.shape[-1]):
        over = w > cap + 1e-12
        if not over.any():
            break
        excess = np.where(over, w - cap, 0.0).sum(-1, keepdims=True)
        w = np.minimum(w, cap)
        room = np.where(w < cap - 1e-12, w, 0.0)
        total = room.sum(-1, keepdims=True)
        w = w + np.divide(excess * room, total, out=np.zeros_like(w), where=total > 0)
    return w


def normalised(raw: np.ndarray, cfg: PortfolioConfig) -> np.ndarray:
    """Non-negative raw weights [D, N] scaled to sum to 1 - min_cash (all zero: cash), then capped."""
    raw = np.where(np.isfinite(raw) & (raw > 0), raw, 0.0)
    total = raw.sum(-1, keepdims=True)
    w = np.divide(raw, total, out=np.zeros_like(raw), where=total > 0) * (1.0 - cfg.min_cash)
    return cap_weights(w, cfg.max_weight)


def robust_weights(method: str, scores: np.ndarray, vol: np.ndarray, cfg: PortfolioConfig) -> np.ndarray:
    """Target weights [D, N] of a robust rule from scores and trailing volatilities [D, N] (NaN:
    not eligible that day). inverse_vol also needs a finite positive volatility."""
    pick = top_k_mask(scores, cfg.top_k)
    if method == "topk":
        return normalised(pick.astype(np.float64), cfg)
    if method == "inverse_vol":
        inverse = np.divide(1.0, vol, out=np.zeros_like(vol, dtype=np.float64), where=np.isfinite(vol) & (vol > 0))
        return normalised(pick * inverse, cfg)
    if method == "score":
        return normalised(pick * np.nan_to_num(scores), cfg)
    raise ValueError(f"{method!r} is not a robust rule")


def _linear_constraints(held: np.ndarray, eligible: np.ndarray,
                        cfg: PortfolioConfig) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]], np.ndarray]:
    """A z <= b, bounds, and the map w = held + M z: z = w itself, or with a turnover bound
    z = [buys u, sells v] (w = held + u - v, sum u + v <= max_turnover)."""
    n = held.size
    if cfg.max_turnover is None:
        ones = np.ones((1, n))
        bounds = [(0.0, cfg.max_weight if ok else min(h, cfg.max_weight)) for ok, h in zip(eligible, held)]
        return (np.vstack([ones, -ones]), np.array([1.0 - cfg.min_cash, cfg.max_cash - 1.0]), bounds,
                np.eye(n))
    eye, ones = np.eye(n), np.ones(n)
    rows = [np.hstack([-eye, eye]), np.hstack([eye, -eye]), np.hstack([ones, -ones])[None],
            np.hstack([-ones, ones])[None], np.ones((1, 2 * n))]
    rhs = [held, cfg.max_weight - held, [1.0 - cfg.min_cash - held.sum()],
           [held.sum() - 1.0 + cfg.max_cash], [cfg.max_turnover]]
    bounds = [(0.0, 1.0 if ok else 0.0) for ok in eligible] + [(0.0, 1.0)] * n  # no buys of ineligible names
    return np.vstack(rows), np.concatenate([np.ravel(r) for r in rhs]), bounds, np.hstack([eye, -eye])


def mean_variance(mu: np.ndarray, cov: np.ndarray, held: np.ndarray, cfg: PortfolioConfig,
                  ) -> tuple[np.ndarray | None, str | None]:
    """Weights [N] maximising mu'w - lambda/2 w'Sigma w under cfg's constraints, starting from the
    held weights [N]; (None, why) when the constraints admit no portfolio or the solver fails.
    NaN in mu marks a name that cannot be bought (it can still be sold)."""
    eligible = np.isfinite(mu)
    mu0 = np.where(eligible, mu, 0.0)
    a, b, bounds, m = _linear_constraints(held, eligible, cfg)
    offset = np.zeros_like(held) if cfg.max_turnover is None else held
    feasible = linprog(np.zeros(m.shape[1]), A_ub=a, b_ub=b, bounds=bounds, method="highs")
    if feasible.status == 2:
        return None, "the constraints admit no portfolio (max weight, cash and turnover bounds conflict)"
    lam = cfg.risk_aversion

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        w = offset + m @ z
        return float(-mu0 @ w + 0.5 * lam * w @ cov @ w), m.T @ (-mu0 + lam * cov @ w)

    start = feasible.x if feasible.status == 0 else np.zeros(m.shape[1])
    result = minimize(objective, start, jac=True, method="SLSQP", bounds=bounds,
                      constraints=[{"type": "ineq", "fun": lambda z: b - a @ z, "jac": lambda z: -a}],
                      options={"maxiter": 200, "ftol": 1e-12})
    if not result.success or (a @ result.x - b).max() > TOLERANCE:
        return None, f"the optimiser failed: {result.message}"
    return np.clip(offset + m @ result.x, 0.0, cfg.max_weight), None


def optimised_or_fallback(mu: np.ndarray, cov: np.ndarray, held: np.ndarray, scores: np.ndarray,
                          cfg: PortfolioConfig, when: str = "") -> tuple[np.ndarray, str | None]:
    """mean_variance's weights, or topk's with a PortfolioWarning (and the reason returned)."""
    w, why = mean_variance(mu, cov, held, cfg)
    if w is not None:
        return w, None
    note = f"mean-variance {when}: {why}; fell back to top-{cfg.top_k} equal weight".replace(" :", ":")
    warnings.warn(note, PortfolioWarning, stacklevel=2)
    return robust_weights("topk", scores[None], np.full((1, mu.size), np.nan), cfg)[0], note


__all__ = [
    "METHODS",
    "PortfolioConfig",
    "PortfolioWarning",
    "cap_weights",
    "mean_variance",
    "normalised",
    "optimised_or_fallback",
    "robust_weights",
    "top_k_mask",
]
