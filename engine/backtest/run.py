"""Daily backtest of positions 0..10 with costs, optional A-share rules and baselines.

Accounting (exact, vectorised with cumulative products): the position p_t decided at close t is
a target exposure w_t = p_t / 10 of equity (fractional shares). It trades at a fill price:

- fill="close" (market-on-close): at close t itself, so w_t earns close t -> close t+1.
- fill="next-open" (the default; a signal from today's close cannot trade at that close): at
  open t+1. Day t+1's return splits into the overnight part close t -> open t+1, earned by the
  old exposure, and the session open t+1 -> close t+1, earned by w_t. Data without opens (a
  close-only table) fall back to the close fill, and metrics["fill"] says "close"; a single
  missing open fills that day at its close.

With h_t the exposure traded to at day t's fill (w_t for the close fill, w_{t-1} for next-open,
cash before the first fill), x_{t-1} yesterday's exposure drifted to yesterday's close, gap
a_t = fill_t / close_{t-1} - 1 and session s_t = close_t / fill_t - 1 (0 for the close fill):
overnight the equity grows by g_t = 1 + x_{t-1} a_t and the holding drifts to
d_t = x_{t-1} (1 + a_t) / g_t; trading to h_t at the fill moves the notional |h_t E - d_t E~|
and pays c on it, c = (cost_bps + slippage_bps) / 1e4 on a buy and that plus stamp_duty_bps / 1e4
on a sell. Solving for the post-trade equity gives f_t = (1 + c d_t) / (1 + c h_t) on a buy and
(1 - c d_t) / (1 - c h_t) on a sell; the session then grows it by 1 + h_t s_t and leaves
x_t = h_t (1 + s_t) / (1 + h_t s_t). Equity E_t = prod(g f (1 + h s)). A unit of turnover is a
notional equal to the equity: a position change of 10 up to the drift. The book starts in cash.

A one-bar delay (metrics delay_1_*) trades every decision one bar later than the fill says: how
much of the result rests on acting within the bar.

Baselines trade on the same tape (fill, costs, rules): buy and hold, constant 5, an SMA crossover,
follow the forecast (with forecasts), a 10 % volatility target on the RiskMetrics EWMA and, with a
1-day distribution forecast (median and sigma of the log return), the analytic mean-variance
fraction clip(median / (lambda sigma^2), 0, 1) behind a no-trade band.

A-share rules (cfg.ashare_rules, engine/backtest/ashare.py): the exposure cannot rise at a fill
at limit-up nor fall at a fill at limit-down (against the previous close, on the board's limit
rounded to the 0.01 tick; prices must be raw). T+1 needs no extra rule: shares bought at one
fill can first be sold at the next, a day later.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from engine.backtest.ashare import apply_limits, daily_limits, limit_days
from engine.backtest.metrics import compute_metrics, drawdown
from engine.backtest.stats import probabilistic_sharpe, sharpe_statistics
from engine.baselines import TRADING_DAYS, ewma_sigma
from engine.config import FILLS, HORIZON, BacktestConfig
from engine.events import Progress, run_to_end
from engine.regime import causal_labels, regime_names

FORECAST_GAIN = 5.0  # follow_forecast: position 5 + gain * (predicted 1-day log return / daily vol)
VOL_DAYS = 20  # trailing days of the follow_forecast volatility
NO_OPENS = "the data have no opens: decisions fill at the close"
VOL_TARGET = 0.10  # vol_target: annualised volatility aimed at, position 10 min(1, target / EWMA vol)
RISK_AVERSION = BacktestConfig.risk_aversion  # analytic: the default lambda in clip(median / (lambda sigma^2), 0, 1)
NO_TRADE_STEPS = 2  # analytic: trade only when the target is this many steps from the held position
NO_DISTRIBUTION = "the model forecasts no 1-day median and sigma"

Array = np.ndarray | torch.Tensor


@dataclass
class BacktestResult:
    frame: pd.DataFrame  # one row per date (see run_backtest)
    metrics: dict
    baselines: dict[str, dict] = field(default_factory=dict)
    per_regime: dict[str, dict] = field(default_factory=dict)


def _shift(x: Array) -> Array:
    """x one step later along the last axis, 0 in front (numpy or torch)."""
    if isinstance(x, torch.Tensor):
        return torch.nn.functional.pad(x[..., :-1], (1, 0))
    return np.concatenate([np.zeros_like(x[..., :1]), x[..., :-1]], axis=-1)


def _daily_factors(gap: Array, weights: Array, buy_cost: float, sell_cost: float,
                   session: Array | None = None) -> tuple[Array, Array]:
    """Growth factors g f (1 + h s) [..., T] and traded notional / pre-trade equity [..., T].

    gap[..., t] = fill_t / close_{t-1} - 1 (index 0 unused: the book starts in cash);
    session[..., t] = close_t / fill_t - 1 (None: fills at the close); weights[..., t] = the
    exposure h_t traded to at day t's fill. Works on numpy arrays and torch tensors.
    """
    prev = _shift(weights)
    if session is not None:
        s = _shift(session)
        prev = prev * (1.0 + s) / (1.0 + prev * s)  # x: yesterday's exposure at yesterday's close
    held = prev * gap
    held[..., 0] = 0.0
    growth = 1.0 + held
    drift = (prev + held) / growth  # d: that exposure after the move to today's fill
    sign = (weights >= drift) * 2 - 1  # +1 buy, -1 sell; integer so torch keeps float64
    sells = (sign < 0).to(weights.dtype) if isinstance(sign, torch.Tensor) else sign < 0  # float64 in torch
    cost = buy_cost + (sell_cost - buy_cost) * sells
    factor = (1.0 + cost * (sign * drift)) / (1.0 + cost * (sign * weights))
    traded = abs(weights * factor - drift)
    if session is not None:
        factor = factor * (1.0 + weights * session)
    return growth * factor, traded


def backtest_equity(close_returns: Array, positions: Array, cost: float) -> Array:
    """Final equity [B] of position paths [B, T] (0..10) filled at the close; the batched fast path.

    close_returns [T]: close_t / close_{t-1} - 1 (index 0 unused). cost: fraction per unit of
    turnover (bps / 1e4), buys and sells. Same accounting as run_backtest with fill="close",
    numpy or torch (any device).
    """
    factors, _ = _daily_factors(close_returns, positions / 10.0, cost, cost)
    return factors.prod(-1)


def _sma_positions(close: pd.Series, fast: int, slow: int) -> pd.Series:
    """10 when the fast SMA of closes up to t is above the slow one, else 0."""
    above = close.rolling(fast, min_periods=fast).mean() > close.rolling(slow, min_periods=slow).mean()
    return above.astype(np.int64) * 10


def forecast_positions(close: pd.Series, predicted: pd.DataFrame) -> pd.Series:
    """clip(round(5 + FORECAST_GAIN * log(pred_1 / close) / trailing daily log vol), 0, 10).

    The volatility uses the last VOL_DAYS log returns up to t; days without a forecast or a
    volatility get the neutral position 5.
    """
    log_ret = np.log(close).diff()
    vol = log_ret.rolling(VOL_DAYS, min_periods=VOL_DAYS).std()
    score = np.log(predicted.iloc[:, 0].reindex(close.index) / close) / vol
    return (5.0 + FORECAST_GAIN * score).round().clip(0, 10).fillna(5.0).astype(np.int64)


def vol_target_positions(close: pd.Series, target: float = VOL_TARGET) -> pd.Series:
    """round(10 min(1, target / annualised RiskMetrics vol known at each close)); 0 before the EWMA
    has its warm-up (no estimate, no risk taken)."""
    vol = ewma_sigma(close.to_numpy(dtype=np.float64)) * np.sqrt(TRADING_DAYS)
    weight = np.minimum(1.0, _divide_or_nan(np.full(vol.shape, target), vol))
    return pd.Series(np.nan_to_num(np.round(10.0 * weight)).astype(np.int64), index=close.index)


def _divide_or_nan(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is not a positive number (no warning)."""
    return np.divide(num, den, out=np.full(den.shape, np.nan), where=np.isfinite(den) & (den > 0))


def banded(targets: np.ndarray, band: int = NO_TRADE_STEPS, start: int = 0) -> np.ndarray:
    """Held positions [T] under a no-trade band: move to targets[t] only when it is at least `band`
    steps from the position held, else keep it (NaN target: keep). Path-dependent, yet vectorised:
    each day is a map of the 11 possible held positions, and a prefix scan composes them in
    log2(T) numpy steps."""
    states = np.arange(11)
    t = np.asarray(targets, dtype=np.float64)[:, None]
    move = np.isfinite(t) & (np.abs(np.nan_to_num(t) - states) >= band)
    maps = np.where(move, np.nan_to_num(t), states).astype(np.int64)  # (T, 11): held before -> after day t
    step = 1
    while step < len(maps):  # Hillis-Steele scan: maps[t] becomes day t's map after all earlier days'
        maps[step:] = np.take_along_axis(maps[step:], maps[:-step], axis=1)
        step *= 2
    return maps[:, start]


def analytic_positions(distribution: pd.DataFrame, risk_aversion: float = RISK_AVERSION,
                       band: int = NO_TRADE_STEPS) -> pd.Series:
    """10 clip(median / (lambda sigma^2), 0, 1) on the 0..10 grid, traded through the no-trade band;
    distribution: per decision date the 1-day log return's "median" and "sigma"."""
    median, sigma = (distribution[k].to_numpy(dtype=np.float64) for k in ("median", "sigma"))
    fraction = np.clip(_divide_or_nan(median, risk_aversion * sigma**2), 0.0, 1.0)
    held = banded(np.round(10.0 * fraction), band)
    return pd.Series(held, index=distribution.index)


@dataclass
class Tape:
    """What a backtest's days offer a trader: fill prices, their returns and the limit days."""

    fill: str  # the fill actually used: "next-open" or "close" (data without opens)
    lag: int  # bars from a decision to its fill: 1 for next-open, 0 for close
    gap: np.ndarray  # fill_t / close_{t-1} - 1
    session: np.ndarray | None  # close_t / fill_t - 1; None for the close fill
    up: np.ndarray  # fill at limit-up (only with A-share rules)
    down: np.ndarray
    buy_cost: float
    sell_cost: float
    note: str | None = None  # why the fill differs from the one asked for


def make_tape(close: pd.Series, days: pd.DatetimeIndex, cfg: BacktestConfig,
              opens: pd.Series | None = None, instrument: str = "") -> Tape:
    """The tape of `days` (close: full history, for the close before the first day)."""
    if cfg.fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, not {cfg.fill!r}")
    c = close.loc[days].to_numpy()
    reference = close.shift(1).loc[days].to_numpy()  # previous close (NaN before the first bar)
    o = None if opens is None else opens.reindex(days).to_numpy(dtype=np.float64)
    usable = None if o is None else np.isfinite(o) & (o > 0)
    note = NO_OPENS if cfg.fill == "next-open" and (usable is None or not usable.any()) else None
    fill = "close" if cfg.fill == "close" or note else "next-open"
    price = np.where(usable, o, c) if fill == "next-open" else c
    if fill == "next-open" and not usable.all():
        note = f"{int((~usable).sum())} day(s) without an open fill at their close"
    gap = np.nan_to_num(price / reference - 1.0)
    session = c / price - 1.0 if fill == "next-open" else None
    if cfg.ashare_rules:
        up, down = limit_days(reference, price, daily_limits(instrument, days, cfg.limit_pct))
    else:
        up = down = np.zeros(len(days), dtype=bool)
    trade = (cfg.cost_bps + cfg.slippage_bps) / 1e4
    return Tape(fill, 1 if fill == "next-open" else 0, gap, session, up, down, trade,
                trade + cfg.stamp_duty_bps / 1e4, note)


def _lagged(decided: np.ndarray, lag: int) -> np.ndarray:
    """The position traded at each day's fill: the decision `lag` bars earlier, cash before."""
    return np.concatenate([np.zeros(lag, dtype=decided.dtype), decided[: len(decided) - lag]])


def _simulate(tape: Tape, decided: np.ndarray, delay: int = 0) -> dict[str, np.ndarray]:
    """Daily arrays of one path of decisions (0..10 per close), `delay` extra bars late."""
    lag = tape.lag + delay
    executed = apply_limits(_lagged(decided, lag), tape.up, tape.down)
    weights = executed / 10.0
    factors, traded = _daily_factors(tape.gap, weights, tape.buy_cost, tape.sell_cost, tape.session)
    # the decision of close t as executed; the last `lag` decisions never reach a fill here
    position = np.concatenate([executed[lag:], decided[len(decided) - lag:]]) if lag else executed
    held = _shift(weights) if tape.session is None else weights  # exposure through day t's move
    return {"position": position, "returns": factors - 1.0, "held": held, "traded": traded,
            "equity": np.cumprod(factors)}


def _metrics(sim: dict[str, np.ndarray], bench: pd.Series, cfg: BacktestConfig, days=slice(None)) -> dict:
    """compute_metrics of the path with its Sharpe interval and probability (stats.py)."""
    returns = pd.Series(sim["returns"], index=bench.index)[days]
    m = compute_metrics(returns, bench[days], sim["held"][days], sim["traded"][days], cfg.risk_free)
    return {**m, **sharpe_statistics(returns.to_numpy(), cfg.risk_free)}


def deflate(result: BacktestResult, trials: Sequence[float], risk_free: float = 0.0) -> BacktestResult:
    """Add deflated_sharpe and trials to result.metrics when 2+ backtests (these earlier Sharpe
    ratios on the same data, and this one) were tried: the best of many tries looks good by luck."""
    returns = result.frame["strategy_return"].to_numpy()
    tried = sharpe_statistics(returns, risk_free, trials=[*trials, result.metrics["sharpe"]])
    result.metrics.update({k: tried[k] for k in ("deflated_sharpe", "trials") if k in tried})
    return result


def _checked_positions(positions: pd.Series, index: pd.DatetimeIndex) -> np.ndarray:
    """Positions on the backtest days, holding the last one over gaps; must be integers 0..10."""
    p = positions.reindex(index).ffill().to_numpy(dtype=np.float64)
    if np.isnan(p).any() or ((p < 0) | (p > 10) | (p != np.round(p))).any():
        raise ValueError("positions must be integers 0..10 on every backtest day")
    return p.astype(np.int64)


def run_backtest(*args: Any, **kwargs: Any) -> BacktestResult:
    """backtest_progress run to its end."""
    return run_to_end(backtest_progress(*args, **kwargs))


def backtest_progress(
    close: pd.Series,
    positions: pd.Series,
    cfg: BacktestConfig,
    regimes: pd.Series | None = None,
    predicted: pd.DataFrame | None = None,
    *,
    opens: pd.Series | None = None,
    instrument: str = "",
    distribution: pd.DataFrame | None = None,
) -> Generator[Progress, None, BacktestResult]:
    """Backtest positions (decided at each close) over cfg.start..cfg.end, next to baselines; a job
    step with Progress after each set of figures (each runs a Sharpe bootstrap: a second for many).

    close: full history (earlier bars feed the SMA, volatility and causal regimes). The backtest
    spans the days of cfg's range that lie within the positions' first and last date. regimes:
    labels (-1..2) or names per date; by default causal_labels of close. predicted: 7 predicted
    closes per date (first column = t+1). per_regime attributes each day's return to the regime
    known when its position was set (the previous close). opens: the day's opens (raw prices, as
    close) for the next-open fill; without them decisions fill at the close. instrument: the name
    holding the exchange code, for the A-share board's limit. distribution: the model's 1-day
    log-return "median" and "sigma" per date, for the analytic baseline (without it that baseline
    is left out and metrics["baseline_notes"] says why).

    frame (index "date"): close, position (the decision at that close as executed, after the
    A-share rules), exposure, regime (name or ""), strategy_return, strategy_equity,
    benchmark_equity (close / first close, no costs), drawdown, pred_1..pred_7 (with predicted)
    and <baseline>_equity (same fill, costs and rules). metrics add fill (and fill_note where the
    fill is not as asked), delay_1_sharpe and delay_1_total_return, sharpe_ci,
    probabilistic_sharpe and probabilistic_sharpe_vs_buy_and_hold (deflate adds deflated_sharpe).
    """
    close = close.astype(np.float64).dropna()
    first, last = positions.first_valid_index(), positions.last_valid_index()
    if first is None:
        raise ValueError("no positions to backtest")
    begin, end = max(first, pd.Timestamp(cfg.start or first)), min(last, pd.Timestamp(cfg.end or last))
    days = close.loc[begin:end].index
    if len(days) < 2:
        raise ValueError("the backtest needs at least two days with a close and a position")
    if regimes is None:
        regimes = pd.Series(causal_labels(close.to_numpy()), index=close.index)
    regime = regimes.reindex(days)
    if pd.api.types.is_numeric_dtype(regime):
        regime = pd.Series(regime_names(regime.fillna(-1).to_numpy()), index=days)
    regime = regime.fillna("").astype(str)
    c = close.loc[days]
    bench = c.pct_change().fillna(0.0)
    tape = make_tape(close, days, cfg, opens, instrument)
    decided = _checked_positions(positions, days)
    sim = _simulate(tape, decided)
    frame = pd.DataFrame({
        "close": c, "position": sim["position"], "exposure": sim["position"] / 10.0,
        "regime": regime, "strategy_return": sim["returns"], "strategy_equity": sim["equity"],
        "benchmark_equity": c / c.iloc[0], "drawdown": drawdown(sim["equity"]),
    }, index=days)
    frame.index.name = "date"
    if predicted is not None:
        pred = predicted.iloc[:, :HORIZON].reindex(days)
        frame[[f"pred_{h}" for h in range(1, pred.shape[1] + 1)]] = pred.to_numpy()
    baselines = {}
    paths = _baseline_positions(close, days, cfg, predicted, distribution)
    decided_in = regime.shift(1).fillna("")
    regimes_seen = sorted(set(decided_in) - {""})
    done, total, message = 0, len(paths) + 1 + len(regimes_seen), "Figures, baselines and Sharpe bootstraps"
    for name, path in paths.items():
        base = _simulate(tape, path)
        baselines[name] = _metrics(base, bench, cfg)
        frame[f"{name}_equity"] = base["equity"]
        done += 1
        yield Progress(done, total, message)
    late = compute_metrics(pd.Series(_simulate(tape, decided, delay=1)["returns"], index=days),
                           risk_free=cfg.risk_free)
    held_sharpe = baselines["buy_and_hold"]["sharpe"]
    vs_held = None if held_sharpe is None else probabilistic_sharpe(sim["returns"], held_sharpe, cfg.risk_free)
    metrics = {**_metrics(sim, bench, cfg), "probabilistic_sharpe_vs_buy_and_hold": vs_held,
               "fill": tape.fill, "delay_1_sharpe": late["sharpe"],
               "delay_1_total_return": late["total_return"]}
    if tape.note:
        metrics["fill_note"] = tape.note
    if distribution is None:
        metrics["baseline_notes"] = {"analytic": NO_DISTRIBUTION}
    done += 1
    yield Progress(done, total, message)
    per_regime = {}
    for name in regimes_seen:
        per_regime[name] = _metrics(sim, bench, cfg, (decided_in == name).to_numpy())
        done += 1
        yield Progress(done, total, message)
    return BacktestResult(frame, metrics, baselines, per_regime)


def _baseline_positions(close: pd.Series, days: pd.DatetimeIndex, cfg: BacktestConfig,
                        predicted: pd.DataFrame | None,
                        distribution: pd.DataFrame | None) -> dict[str, np.ndarray]:
    paths = {
        "buy_and_hold": np.full(len(days), 10, dtype=np.int64),
        "constant_5": np.full(len(days), 5, dtype=np.int64),
        "sma_crossover": _sma_positions(close, cfg.sma_fast, cfg.sma_slow).reindex(days).to_numpy(),
        "vol_target": vol_target_positions(close).reindex(days).to_numpy(),
    }
    if predicted is not None:
        paths["follow_forecast"] = forecast_positions(close, predicted).reindex(days).to_numpy()
    if distribution is not None:  # the band starts in cash on the first backtest day
        paths["analytic"] = analytic_positions(distribution.reindex(days), cfg.risk_aversion).to_numpy()
    return paths


def stitch_blocks(
    close: pd.Series,
    pieces: list[tuple[str, str, pd.Series]],
    cfg: BacktestConfig,
    regimes: pd.Series | None = None,
    predicted: pd.DataFrame | None = None,
    **market: Any,
) -> BacktestResult:
    """One backtest over stitched out-of-sample pieces (start, end, positions), in date order.

    Each piece contributes its positions within [start, end]; pieces must neither overlap nor
    leave trading days between them uncovered. market: run_backtest's opens, instrument and
    distribution.
    """
    parts = [p.loc[pd.Timestamp(s): pd.Timestamp(e)].dropna() for s, e, p in pieces]
    stitched = pd.concat([p for p in parts if len(p)])
    if not stitched.index.is_monotonic_increasing or stitched.index.has_duplicates:
        raise ValueError("walk-forward pieces overlap or are out of order")
    span = close.loc[stitched.index[0]: stitched.index[-1]].index
    missing = span.difference(stitched.index)
    if len(missing):
        raise ValueError(f"walk-forward pieces leave {len(missing)} days uncovered, "
                         f"first {missing[0].date()}")
    window = replace(cfg, start=str(span[0].date()), end=str(span[-1].date()))
    return run_backtest(close, stitched, window, regimes, predicted, **market)


__all__ = [
    "FORECAST_GAIN",
    "BacktestResult",
    "Tape",
    "analytic_positions",
    "backtest_equity",
    "backtest_progress",
    "banded",
    "deflate",
    "forecast_positions",
    "make_tape",
    "run_backtest",
    "stitch_blocks",
    "vol_target_positions",
]
