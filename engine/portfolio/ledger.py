"""The paper ledger of a live portfolio: one row per day for the whole book (units per name, cash,
equity), chained day by day from the last recorded row, as a broker statement would be.

Each day is what the portfolio backtest (backtest.simulate) does on that day, taken on its own:
decisions from the same rule (backtest.decision_rule) on what is known at the close, fills through
the same trade (backtest.trade: exact costs, frozen names), and the same schedule: a decision on the
ledger's first day, then every pcfg.rebalance days and, with a band, on the first close whose
weights drifted past it (with fills at the close, a drift at the decision's own close moves the next
decision to the day after). reconcile_portfolio replays the recorded prices and decisions through
simulate: the paper equity and the backtest's agree within 1 bp a day when the chain is right.

A row's `book` (JSON) holds per name: "units" and "held" weights at the close, "close", "fill" (the
fill price, on days something filled at the open), "target" (weights decided at that close, null
on other days); the first row also holds "previous" (date and closes of the day before), which the
A-share limits of its fill need.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd

from engine.config import BacktestConfig, from_dict, to_dict
from engine.data.universe import is_universe
from engine.portfolio.backtest import (
    Forecasts,
    Market,
    cost_rates,
    decision_rule,
    fill_limits,
    fill_prices,
    simulate,
    trade,
)
from engine.portfolio.construct import PortfolioConfig

CAPITAL = 1.0  # as simulate starts: cash 1, no units
PORTFOLIO = "portfolio"  # the instrument column of a portfolio ledger's rows


def _named(values: np.ndarray, names: list[str]) -> dict[str, float]:
    """Finite values by instrument (JSON has no NaN)."""
    return {n: float(v) for n, v in zip(names, values) if np.isfinite(v)}


def _vector(values: dict | None, names: list[str], fill: float = np.nan) -> np.ndarray:
    values = values or {}
    return np.array([values.get(n, fill) for n in names], dtype=np.float64)


def config_json(pcfg: PortfolioConfig, cfg: BacktestConfig) -> str:
    return json.dumps({"portfolio": to_dict(pcfg), "backtest": to_dict(replace(cfg, start=None, end=None))})


def mark_config(dataset: str, pcfg: PortfolioConfig, cfg: BacktestConfig) -> dict:
    """A live mark's portfolio config, as the store keeps it: one builder for `mark-live --portfolio` and
    the GUI's Mark live dialog, so their marks are the same. A dataset that is not a universe raises."""
    if not is_universe(dataset):
        raise ValueError(f"{dataset} is not a universe (a folder, a vipdoc root, a wide table): "
                         "only a universe trades as one portfolio")
    return json.loads(config_json(pcfg, cfg))


def configs_of(config: str | dict) -> tuple[PortfolioConfig, BacktestConfig]:
    data = json.loads(config) if isinstance(config, str) else config
    return from_dict(PortfolioConfig, data["portfolio"]), from_dict(BacktestConfig, data["backtest"])


def last_decision(rows: list[dict]) -> tuple[int, dict] | None:
    """(position in rows, book) of the last row that decided targets."""
    for k in range(len(rows) - 1, -1, -1):
        book = json.loads(rows[k]["book"])
        if book["target"] is not None:
            return k, book
    return None


def _drift(held: np.ndarray, target: np.ndarray) -> float:
    return float(np.abs(held - np.nan_to_num(target)).max()) if held.size else 0.0


def _fill(units: np.ndarray, cash: float, target: np.ndarray, price: np.ndarray, up: np.ndarray, down: np.ndarray,
          buy: np.ndarray, sell: np.ndarray, names: list[str]) -> tuple[np.ndarray, float, float, list[str]]:
    """backtest.trade at one fill: new units, cash, the fee paid, and the names it wanted to move
    but could not (trade keeps a frozen name's units exactly: no price, or a limit day)."""
    value = np.where(units != 0, units * np.nan_to_num(price), 0.0)
    before = cash + value.sum()
    new, cash, _, paid = trade(units, cash, target, price, up, down, buy, sell)
    stuck = [n for n, u, v, w, x in zip(names, units, new, np.nan_to_num(target), value)
             if u == v and abs(w - x / before) > 1e-9]
    return new, cash, paid * before, stuck


def portfolio_ledger_rows(rows: list[dict], market: Market, forecasts: Forecasts, days: np.ndarray,
                          pcfg: PortfolioConfig, cfg: BacktestConfig) -> list[dict]:
    """The ledger's new rows for the market's day indices `days` (consecutive, after the last of
    `rows`, the ledger so far; [] starts in cash on days[0]). `forecasts`: [D, N, H] known at each
    new day's close (other days unused)."""
    names = market.instruments
    fills, lag, _ = fill_prices(market, cfg)
    up, down = fill_limits(market, fills, cfg)
    close = pd.DataFrame(market.close).ffill().to_numpy()  # a suspended name is marked at its last close
    costs = cost_rates(cfg, len(names))
    decide, _ = decision_rule(market, forecasts, pcfg)
    book = json.loads(rows[-1]["book"]) if rows else None
    units = _vector(book and book["units"], names, 0.0)
    cash, equity = (rows[-1]["cash"], rows[-1]["equity"]) if rows else (CAPITAL, CAPITAL)
    found = last_decision(rows)
    decided_at = market.dates.get_loc(pd.Timestamp(rows[found[0]]["date"])) if found else None
    target = _vector(found[1]["target"], names) if found else None
    decided_held = _vector(found[1]["held"], names, 0.0) if found else None  # the book after its fill
    decided = bool(book and book["target"] is not None)  # at the last close: with lag 1 it fills at this open
    out: list[dict] = []
    for d in days:
        prev_equity, fee, fill_used, stuck = equity, 0.0, None, []
        if lag == 1 and decided:
            units, cash, fee, stuck = _fill(units, cash, target, fills[d], up[d], down[d], *costs, names)
            fill_used = fills[d]
        value = np.where(units != 0, units * np.nan_to_num(close[d]), 0.0)
        equity = cash + value.sum()
        held = value / equity
        k = None if decided_at is None else d - decided_at
        decided = k is None or k >= pcfg.rebalance or (pcfg.band is not None and (
            _drift(held, target) > pcfg.band or (lag == 0 and k == 1 and _drift(decided_held, target) > pcfg.band)))
        if decided:
            decided_at, target = int(d), decide(int(d), held)
            if lag == 0:  # fills at this close
                units, cash, fee, stuck = _fill(units, cash, target, fills[d], up[d], down[d], *costs, names)
                value = np.where(units != 0, units * np.nan_to_num(close[d]), 0.0)
                equity = cash + value.sum()
                held = value / equity
            decided_held = held
        row_book = {"lag": lag, "units": _named(units, names), "held": _named(held, names),
                    "close": _named(market.close[d], names),
                    "fill": None if fill_used is None else _named(fill_used, names),
                    "target": _named(target, names) if decided else None}
        if not rows and not out and d > 0:
            row_book["previous"] = {"date": f"{market.dates[d - 1]:%Y-%m-%d}",
                                    "close": _named(market.close[d - 1], names)}
        out.append({"date": f"{market.dates[d]:%Y-%m-%d}", "instrument": PORTFOLIO, "side": "", "fee": float(fee),
                    "blocked": f"no fill (suspended or at a limit): {', '.join(stuck)}" if stuck else "",
                    "cash": float(cash), "equity": float(equity), "daily_return": equity / prev_equity - 1.0,
                    "book": json.dumps(row_book)})
    return out


def reconcile_portfolio(frame: pd.DataFrame) -> pd.DataFrame:
    """A portfolio ledger's days next to simulate's book over the same recorded prices and decisions
    (same schedule, costs and rules): equity, backtest_equity and the daily gap in bp."""
    pcfg, cfg = configs_of(frame["config"].iloc[-1])
    books = [json.loads(b) for b in frame["book"]]
    names = list(dict.fromkeys(n for b in books for n in b["close"]))
    first = books[0].get("previous")
    dates = pd.DatetimeIndex(([pd.Timestamp(first["date"])] if first else []) + list(frame.index))
    close = np.vstack(([_vector(first["close"], names)] if first else []) + [_vector(b["close"], names) for b in books])
    fills = np.vstack(([close[0]] if first else []) + [_vector(b["fill"], names) for b in books])
    lead = 1 if first else 0
    traded_at_open = books[-1]["lag"] == 1
    market = Market(dates, names, close, np.where(np.isfinite(fills), fills, close) if traded_at_open else None)
    targets = np.vstack([np.full(len(names), np.nan)] * lead
                        + [np.full(len(names), np.nan) if b["target"] is None else _vector(b["target"], names, 0.0)
                           for b in books])
    sim, _ = simulate(market, np.arange(lead, len(dates)), lambda day, held: targets[day], pcfg,
                      replace(cfg, fill="next-open" if traded_at_open else "close"))
    out = pd.DataFrame({"equity": frame["equity"].to_numpy(), "daily_return": frame["daily_return"].to_numpy(),
                        "backtest_equity": sim.equity, "backtest_return": sim.returns}, index=frame.index)
    out["gap_bps"] = (out["daily_return"] - out["backtest_return"]) * 1e4
    return out


__all__ = ["CAPITAL", "PORTFOLIO", "config_json", "configs_of", "last_decision", "mark_config",
           "portfolio_ledger_rows", "reconcile_portfolio"]
