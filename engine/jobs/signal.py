"""Tomorrow's signals: every live model scores the latest bar of its instruments, its paper ledger
records the days since its last entry (fills at the open, book at the close, the signal as issued
with the checkpoint hash), and the orders that move the current book to the targets are stated
with the A-share rules that apply to them.

Positions come from the same function a backtest uses (jobs.backtest.positions_for), on the data as
the workstation holds them (data.update.held_source), so the ledger and a backtest of the same bars
trade the same signals. A model marked live on a universe with a portfolio config trades it as the
portfolio backtest does: target weights from the same rule (portfolio.backtest.decision_rule) on
the latest bar, one ledger for the whole book (portfolio.ledger), orders in shares.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.atomic import atomic_write
from engine.backtest.ashare import daily_limits, limit_prices
from engine.config import BacktestConfig
from engine.data import load_bars
from engine.data.universe import expand_sources, is_universe, load_universe
from engine.data.update import data_folder, held_source
from engine.events import CancelToken, Progress
from engine.forecast import model_windows
from engine.jobs.backtest import Source, load_source, positions_for
from engine.jobs.portfolio import universe_forecasts
from engine.ledger import PaperLedger
from engine.portfolio.backtest import Market, cost_rates, trade
from engine.portfolio.ledger import CAPITAL, PORTFOLIO, config_json, configs_of, portfolio_ledger_rows
from engine.store import RunStore

T1_RULE = ("T+1: shares bought at a fill are first sold at the next one; orders filled at the next "
           "open from the close's book are never blocked by it")
ORDER_COLUMNS = ["asof", "instrument", "side", "size", "unit", "reference_price", "fill_day", "limit_up",
                 "limit_down", "blocked", "rule", "run_id", "checkpoint_sha256"]


@dataclass
class Holding:
    """One line of the current book: shares (with the ones bought on the fill day, not yet sellable)
    or a position 0..10."""

    quantity: float | None = None
    position: int | None = None
    bought_today: float = 0.0


@dataclass
class CurrentBook:
    holdings: dict[str, Holding]
    cash: float | None = None


@dataclass
class Order:
    instrument: str
    side: str  # "buy" | "sell"
    size: float  # shares (a quantity book) or position steps of 10 % (a position book)
    unit: str  # "shares" | "steps"
    reference_price: float  # the close the target was set at
    fill_day: str  # the next business day (exchange holidays are not known)
    limit_up: float | None = None
    limit_down: float | None = None
    blocked: str = ""  # why (part of) the order cannot fill, known now
    rule: str = ""  # the rule that may still block it at the open


@dataclass
class SignalReport:
    asof: str
    # {"instrument", "position" (0..10) or "weight" (a portfolio's, with "rebalance"), "fill" ("open": the next
    # open; "close": asof's close, a portfolio without opens), "run_id", "checkpoint_sha256"}
    targets: list[dict] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    ledger_days: int = 0  # days the ledgers recorded in this call
    rules: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"asof": self.asof, "targets": self.targets, "orders": [asdict(o) for o in self.orders],
                "ledger_days": self.ledger_days, "rules": self.rules}


def read_book(path: str | Path) -> CurrentBook:
    """A CSV of instrument,quantity (optional bought_today; a row "cash" holds the cash) or
    instrument,position (0..10)."""
    frame = pd.read_csv(path)
    frame.columns = [c.strip().lower() for c in frame.columns]
    if "instrument" not in frame or not ({"quantity", "position"} & set(frame.columns)):
        raise ValueError(f"{path}: a book needs columns instrument and quantity (or position)")
    cash_rows = frame["instrument"].astype(str).str.lower() == "cash"
    cash = float(frame.loc[cash_rows, "quantity"].sum()) if cash_rows.any() and "quantity" in frame else None
    holdings = {}
    for row in frame.loc[~cash_rows].to_dict("records"):
        if "quantity" in row and pd.notna(row["quantity"]):
            holdings[str(row["instrument"])] = Holding(quantity=float(row["quantity"]),
                                                       bought_today=float(row.get("bought_today") or 0.0))
        else:
            holdings[str(row["instrument"])] = Holding(position=int(row["position"]))
    return CurrentBook(holdings, cash)


def plan_order(instrument: str, target: int, holding: Holding, cash: float | None, close: float,
               asof: pd.Timestamp, *, ashare: bool, limit_pct: float | None = None,
               fill_open: float | None = None) -> Order | None:
    """The order moving `holding` to position `target` at the next open, with the A-share rules:
    the limit prices of the fill day (a buy cannot fill at limit-up, a sell at limit-down: stated as
    blocked when `fill_open`, a known open, sits there) and T+1 (shares bought on the fill day stay)."""
    if holding.position is not None or holding.quantity is None:
        change, unit = float(target - (holding.position or 0)), "steps"
    else:
        equity = (cash or 0.0) + holding.quantity * close
        change, unit = target / 10.0 * equity / close - holding.quantity, "shares"
    if abs(change) < 1e-9:
        return None
    return ruled_order(instrument, change, unit, holding, close, asof + pd.offsets.BDay(1), ashare=ashare,
                       limit_pct=limit_pct, fill_open=fill_open)


def ruled_order(instrument: str, change: float, unit: str, holding: Holding, close: float, fill_day: pd.Timestamp,
                *, ashare: bool, limit_pct: float | None = None, fill_open: float | None = None) -> Order:
    """The order for a change of `change` units, with T+1 and the fill day's limit prices stated."""
    order = Order(instrument, "buy" if change > 0 else "sell", abs(change), unit, close, f"{fill_day:%Y-%m-%d}")
    if order.side == "sell" and unit == "shares" and holding.bought_today > 0:
        sellable = max(0.0, holding.quantity - holding.bought_today)
        if order.size > sellable:
            order.blocked = (f"T+1: {holding.bought_today:g} shares bought on {order.fill_day} cannot be sold "
                             f"before the next day; size cut from {order.size:g} to {sellable:g}")
            order.size = sellable
    if ashare:
        limit = daily_limits(instrument, pd.DatetimeIndex([fill_day]), limit_pct)
        if np.isfinite(limit).all():
            up, down = (float(x[0]) for x in limit_prices(np.array([close]), limit))
            order.limit_up, order.limit_down = up, down
            edge = up if order.side == "buy" else down
            word = "limit-up" if order.side == "buy" else "limit-down"
            order.rule = f"no {order.side} at a {word} open ({edge:.2f})"
            if fill_open is not None and abs(fill_open - edge) < 0.005:
                order.blocked = f"{word} open at {edge:.2f}: the {order.side} cannot fill"
    return order


def _pairs(store: RunStore, run: str | None, data: str | None) -> list[tuple[str, str, dict | None]]:
    """(run, dataset, the live mark's config: None or a portfolio's) to score: the one named, else
    every live mark."""
    marks = {(m["run_id"], m["dataset"]): m["config"] for m in store.live_models()}
    if run is not None and data is not None:
        return [(run, data, marks.get((run, data)))]
    live = [(r, d, c) for (r, d), c in marks.items() if (run is None or r == run) and (data is None or d == data)]
    if not live:
        raise ValueError(f"run {run} is not marked live on any dataset: give --data" if run else
                         "no model is marked live: mark a run live (mark-live) or give --run")
    return live


def signal_job(store: RunStore, *, run: str | None = None, data: str | None = None,
               book: CurrentBook | None = None, cfg: BacktestConfig | None = None,
               cancel: CancelToken | None = None) -> Generator[Progress, None, SignalReport]:
    """Score the latest bar for `run` on `data` (default: every live model), append the ledgers,
    and return targets and orders (from `book`, default each ledger's last book). `cfg`: costs and
    rules of the single-instrument ledgers; a portfolio mark trades with the configs it was marked with."""
    folder = data_folder(store.path)
    pairs = _pairs(store, run, data)
    report, asofs = SignalReport(asof=""), []
    for k, (run_id, dataset, mark) in enumerate(pairs):
        yield Progress(k, len(pairs), f"Scoring {run_id} on {dataset}")
        src = load_source(run_id, store)
        held = held_source(dataset, folder)
        if mark and "portfolio" in mark:
            asofs.append((yield from _portfolio_signal(store, src, dataset, held, mark, book, report, cancel)))
            continue
        members = expand_sources([held])[0] if is_universe(held) else [held]
        for member in members:
            bars = load_bars(member, adjust=src.data_cfg.adjust)
            ashare = bars.market == "cn"
            use = cfg or BacktestConfig(ashare_rules=ashare, stamp_duty_bps=5.0 if ashare else 0.0)
            ws = model_windows(src.price, bars)
            ledger = PaperLedger(store, run_id, dataset if member == held else member)
            rows = ledger.rows()
            after = pd.Timestamp(rows[-1]["date"]) if rows else ws.dates[-1] - pd.Timedelta(days=1)
            days = np.flatnonzero(ws.dates > after)
            days = days[days >= src.first_day]
            if not len(days):
                raise ValueError(f"{member}: no bar after the ledger's last day {after:%Y-%m-%d} with "
                                 f"{src.first_day + 1} days of history")
            positions, _ = yield from positions_for(src, ws, days, cancel)
            close = pd.Series(ws.close, index=ws.dates)
            added = ledger.append(close, bars.frame["open"], positions, use, instrument=bars.instrument,
                                  checkpoint_sha256=src.sha256)
            report.ledger_days += len(added)
            last = ledger.rows()[-1]
            target, asof = int(positions.iloc[-1]), ws.dates[-1]
            asofs.append(asof)
            report.targets.append({"instrument": bars.instrument, "position": target, "fill": "open",
                                   "run_id": run_id, "checkpoint_sha256": src.sha256})
            holding, cash = _holding(book, bars.instrument, member, last)
            order = plan_order(bars.instrument, target, holding, cash, float(ws.close[-1]), asof,
                               ashare=use.ashare_rules, limit_pct=use.limit_pct)
            if order is not None:
                report.orders.append(order)
    report.asof = f"{max(asofs):%Y-%m-%d}"
    report.rules += [T1_RULE, "limit days: no buy at a limit-up open, no sell at a limit-down open "
                     "(limit prices from the close, the board's limit, 0.01 tick)"]
    yield Progress(len(pairs), len(pairs), "Signals issued")
    return report


def _portfolio_signal(store: RunStore, src: Source, dataset: str, held: str, mark: dict, book: CurrentBook | None,
                      report: SignalReport, cancel: CancelToken | None) -> Generator[Progress, None, pd.Timestamp]:
    """A live portfolio: forecast every member on the days after the ledger's last (a new ledger starts
    on the latest bar), append the ledger's book, and on a decision day state the orders that move the
    current book to the target weights; the asof day."""
    pcfg, cfg = configs_of(mark)
    universe = load_universe(held)
    if not universe.tables:
        raise ValueError(f"{dataset}: no instruments imported")
    market = Market.from_tables(universe.tables)
    ledger = PaperLedger(store, src.run_id, dataset)
    rows = ledger.rows()
    days = (np.flatnonzero(market.dates > pd.Timestamp(rows[-1]["date"])) if rows
            else np.array([len(market.dates) - 1]))
    if not len(days):
        raise ValueError(f"{dataset}: no bar after the ledger's last day {rows[-1]['date']}")
    forecasts = yield from universe_forecasts(src.price, market, universe.tables, f"{market.dates[days[0]]:%Y-%m-%d}",
                                              None, cancel)
    new = portfolio_ledger_rows(rows, market, forecasts, days, pcfg, cfg)
    ledger.record(new, instrument=PORTFOLIO, checkpoint_sha256=src.sha256, config=config_json(pcfg, cfg))
    report.ledger_days += len(new)
    chain = rows + new
    last = json.loads(chain[-1]["book"])
    decided, asof = last["target"] is not None, market.dates[days[-1]]
    weights = last["target"] if decided else last["held"]
    fill = "close" if last["lag"] == 0 else "open"
    report.targets += [{"instrument": n, "weight": weights.get(n, 0.0), "rebalance": decided, "fill": fill,
                        "run_id": src.run_id, "checkpoint_sha256": src.sha256} for n in market.instruments]
    if decided:
        # the book before the decision fills: with fills at the close the ledger has traded at this close
        # already, so the day before's (cash on a new ledger); with fills at the next open, this close's
        prior = chain[-1] if last["lag"] == 1 else chain[-2] if len(chain) > 1 else None
        start = ({}, CAPITAL) if prior is None else (json.loads(prior["book"])["units"], prior["cash"])
        report.orders += portfolio_orders(market, last["target"], start, book, cfg,
                                          asof if last["lag"] == 0 else asof + pd.offsets.BDay(1))
    report.rules.append(f"portfolio {dataset}: {pcfg.method}, top {pcfg.top_k}, rebalance every {pcfg.rebalance} "
                        "day(s); orders sized in shares to reach the target weights after costs at the reference "
                        "close" + ("; the data have no opens: they fill at that close, as the backtest assumes"
                                   if last["lag"] == 0 else ""))
    return asof


def portfolio_orders(market: Market, target: dict, ledger_book: tuple[dict, float], book: CurrentBook | None,
                     cfg: BacktestConfig, fill_day: pd.Timestamp) -> list[Order]:
    """Orders (shares) that move the current book (`book`, else the ledger's units and cash) to the
    target weights at the latest closes, costs paid: backtest.trade at those prices."""
    names = market.instruments
    if book is None:
        units, cash = (np.array([ledger_book[0].get(n, 0.0) for n in names]), ledger_book[1])
        lines = {}
    else:
        if book.cash is None or any(h.quantity is None for h in book.holdings.values()):
            raise ValueError("a portfolio book needs instrument,quantity rows and a 'cash' row")
        lines = book.holdings
        if unknown := sorted(set(lines) - set(names)):
            raise ValueError(f"the book holds {', '.join(unknown)}, outside the universe: no price to trade it at")
        units, cash = np.array([lines[n].quantity if n in lines else 0.0 for n in names]), book.cash
    close = market.close[-1]
    none = np.zeros(len(names), dtype=bool)
    new, *_ = trade(units, cash, np.array([target.get(n, 0.0) for n in names]), close, none, none,
                    *cost_rates(cfg, len(names)))
    return [ruled_order(n, float(new[i] - units[i]), "shares", lines.get(n) or Holding(quantity=float(units[i])),
                        float(close[i]), fill_day, ashare=cfg.ashare_rules, limit_pct=cfg.limit_pct)
            for i, n in enumerate(names) if abs(new[i] - units[i]) > 1e-9]


def _holding(book: CurrentBook | None, instrument: str, member: str, last: dict) -> tuple[Holding, float | None]:
    """The current holding: the given book's line (by instrument name or dataset), else the ledger's."""
    if book is None:
        return Holding(quantity=last["quantity"]), last["cash"]
    line = book.holdings.get(instrument) or book.holdings.get(member) or Holding(quantity=0.0, position=None)
    return line, book.cash


def write_orders(report: SignalReport, path: str | Path) -> int:
    """The orders as CSV (atomic), one row per order with the run and checkpoint that set its target."""
    by_instrument = {t["instrument"]: t for t in report.targets}
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, ORDER_COLUMNS)
        writer.writeheader()
        for order in report.orders:
            target = by_instrument[order.instrument]
            writer.writerow({**asdict(order), "asof": report.asof, "run_id": target["run_id"],
                             "checkpoint_sha256": target["checkpoint_sha256"]})
    return len(report.orders)


__all__ = ["CurrentBook", "Holding", "Order", "SignalReport", "plan_order", "portfolio_orders", "read_book",
           "ruled_order", "signal_job", "write_orders"]
