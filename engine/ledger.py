"""The paper ledger: each day's signal as issued, its fill at the next open with costs, the book
(shares, cash, equity) at the close; append-only in the run history (store triggers refuse edits).

It keeps books the way a broker statement does, in shares and cash, not in the backtest's growth
factors: reconciling the two (`reconcile`, within 1 bp a day on the same bars and signals) is the
proof that the backtest's algebra (engine/backtest/run.py) is what trading those signals earns.
A live portfolio's ledger keeps the whole book in one row a day (engine/portfolio/ledger.py);
ledger_report reconciles either kind.

Rules, as the next-open backtest applies them: the signal of close t trades at open t+1 (a missing
open fills at that day's close) to the exposure signal / 10 of the post-trade equity (fractional
shares, paper); cost (cost_bps + slippage_bps) / 1e4 of the traded notional both sides, plus
stamp_duty_bps on sells. A-share rules: at a limit-up open the target cannot rise above the one
held, at a limit-down open it cannot fall (the order is stated blocked); T+1 never binds here,
since shares bought at one open are first sold at the next one, a day later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from engine.backtest.run import make_tape, run_backtest
from engine.config import BacktestConfig, from_dict, to_dict
from engine.portfolio.ledger import reconcile_portfolio
from engine.store import RunStore

CAPITAL = 1.0  # paper equity starts at 1: returns and the backtest's equity read alike
BAND_DAYS = 20  # the alarm compares rolling 20-day returns ...
BAND_LEVEL = 0.95  # ... with the central 95 % of the backtest's 20-day returns


def ledger_key(run_id: str, dataset: str) -> str:
    return f"{run_id}@{dataset}"


@dataclass(frozen=True)
class Book:
    """The book at a close: what the next fill starts from."""

    quantity: float
    cash: float
    target: int  # the exposure (0..10) traded to at the last fill
    signal: int | None  # decided at that close, traded at the next open


def _fill(book: Book, price: float, close: float, up: bool, down: bool, buy_cost: float,
          sell_cost: float) -> dict:
    """One open: trade the book to its signal's exposure of post-trade equity (costs solved for
    exactly), then mark it at the close."""
    wanted = book.target if book.signal is None else book.signal
    target = min(wanted, book.target) if up else max(wanted, book.target) if down else wanted
    blocked = ("" if target == wanted else
               f"limit-up open: buy to {wanted}/10 blocked, held {target}/10" if up else
               f"limit-down open: sell to {wanted}/10 blocked, held {target}/10")
    before = book.cash + book.quantity * price
    held, weight = book.quantity * price, target / 10.0
    buying = weight * before >= held  # the backtest's test: target exposure >= drifted exposure
    cost = buy_cost if buying else sell_cost
    sign = 1.0 if buying else -1.0
    after = (before + sign * cost * held) / (1.0 + sign * cost * weight)  # fee = cost * |traded notional|
    quantity = weight * after / price
    fee = before - after
    cash = book.cash - (quantity - book.quantity) * price - fee
    return {"fill_price": price, "target": target, "side": "buy" if quantity > book.quantity else
            "sell" if quantity < book.quantity else "", "traded_quantity": quantity - book.quantity,
            "fee": fee, "blocked": blocked, "quantity": quantity, "cash": cash,
            "equity": cash + quantity * close}


def book_of(row: dict | None) -> Book:
    if row is None:
        return Book(0.0, CAPITAL, 0, None)
    return Book(row["quantity"], row["cash"], row["target"], row["signal"])


def ledger_rows(last: dict | None, close: pd.Series, opens: pd.Series | None, signals: pd.Series,
                cfg: BacktestConfig, *, instrument: str) -> list[dict]:
    """The ledger's new days: the days of `signals` (positions 0..10 decided at those closes) after
    `last` (the last recorded row; None: a new ledger, which starts in cash on its first day).
    A ledger is a chain of books, each from the one before: the loop runs over the days appended,
    usually one."""
    days = signals.index.intersection(close.index)
    days = days[days > pd.Timestamp(last["date"])] if last else days
    if not len(days):
        return []
    cfg = replace(cfg, fill="next-open")
    tape = make_tape(close, days, cfg, opens, instrument)
    c = close.loc[days].to_numpy(dtype=np.float64)
    o = c if opens is None else opens.reindex(days).to_numpy(dtype=np.float64)
    fills = np.where(np.isfinite(o) & (o > 0), o, c)  # make_tape's fill: the open, else the close
    issued = signals.loc[days]
    rows, book, prev_equity = [], book_of(last), last["equity"] if last else CAPITAL
    for i, day in enumerate(days):
        if last is None and i == 0:
            row = {"fill_price": None, "target": 0, "side": "", "traded_quantity": 0.0, "fee": 0.0,
                   "blocked": "", "quantity": 0.0, "cash": CAPITAL, "equity": CAPITAL}
        else:
            row = _fill(book, float(fills[i]), float(c[i]), bool(tape.up[i]), bool(tape.down[i]), tape.buy_cost,
                        tape.sell_cost)
        signal = None if pd.isna(issued.iloc[i]) else int(issued.iloc[i])
        row.update(date=f"{day:%Y-%m-%d}", open=_num(o[i]), close=float(c[i]),
                   daily_return=row["equity"] / prev_equity - 1.0, signal=signal)
        rows.append(row)
        book, prev_equity = Book(row["quantity"], row["cash"], row["target"], signal), row["equity"]
    return rows


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class PaperLedger:
    """One live model's paper book on one dataset, in the run history."""

    def __init__(self, store: RunStore, run_id: str, dataset: str) -> None:
        self.store, self.run_id, self.dataset = store, run_id, dataset
        self.key = ledger_key(run_id, dataset)

    def rows(self) -> list[dict]:
        return self.store.ledger_days(self.key)

    def frame(self) -> pd.DataFrame:
        rows = self.rows()
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        frame["date"] = pd.to_datetime(frame["date"])
        return frame.set_index("date")

    def append(self, close: pd.Series, opens: pd.Series | None, signals: pd.Series, cfg: BacktestConfig,
               *, instrument: str, checkpoint_sha256: str) -> list[dict]:
        """Record the days after the last one: fills of yesterday's signal, today's book and signal."""
        rows = self.rows()
        new = ledger_rows(rows[-1] if rows else None, close, opens, signals, cfg, instrument=instrument)
        self.record(new, instrument=instrument, checkpoint_sha256=checkpoint_sha256,
                    config=json.dumps(to_dict(replace(cfg, fill="next-open", start=None, end=None))))
        return new

    def record(self, rows: list[dict], *, instrument: str, checkpoint_sha256: str, config: str) -> None:
        """Append computed days (a portfolio's come from engine.portfolio.ledger) under this ledger."""
        self.store.append_ledger([{**r, "ledger": self.key, "run_id": self.run_id, "dataset": self.dataset,
                                   "instrument": instrument, "checkpoint_sha256": checkpoint_sha256,
                                   "config": config} for r in rows])


def reconcile(frame: pd.DataFrame) -> pd.DataFrame:
    """The ledger's days next to a next-open backtest of the same bars and signals (same costs and
    rules): equity, backtest_equity and the daily gap in bp."""
    cfg = from_dict(BacktestConfig, json.loads(frame["config"].iloc[-1]))
    signals = frame["signal"].astype("float64").ffill().fillna(0.0)
    result = run_backtest(frame["close"], signals, cfg, opens=frame["open"].astype("float64"),
                          instrument=str(frame["instrument"].iloc[-1]))
    out = pd.DataFrame({"equity": frame["equity"] / frame["equity"].iloc[0],
                        "daily_return": frame["daily_return"].to_numpy()}, index=frame.index)
    out.iloc[0, 1] = 0.0
    out["backtest_equity"] = result.frame["strategy_equity"].to_numpy()
    out["backtest_return"] = result.frame["strategy_return"].to_numpy()
    out["gap_bps"] = (out["daily_return"] - out["backtest_return"]) * 1e4
    return out


def interval_alarm(live: np.ndarray, reference: np.ndarray, days: int = BAND_DAYS,
                   level: float = BAND_LEVEL) -> dict:
    """Is the latest rolling `days`-day live return outside the central `level` of the reference
    backtest's `days`-day returns? (The empirical band keeps the backtest's own autocorrelation.)"""
    def rolling(r: np.ndarray) -> np.ndarray:
        growth = np.cumprod(np.concatenate([[1.0], 1.0 + np.nan_to_num(r)]))
        return growth[days:] / growth[:-days] - 1.0

    ref = rolling(np.asarray(reference, dtype=np.float64))
    if len(ref) < 2 * days:
        return {"alarm": False, "message": f"no backtest of {2 * days}+ days to compare with", "band": None,
                "latest": None}
    low, high = np.quantile(ref, [(1 - level) / 2, (1 + level) / 2])
    mine = rolling(np.asarray(live, dtype=np.float64))
    if not len(mine):
        return {"alarm": False, "message": f"fewer than {days} live days", "band": [low, high], "latest": None}
    latest = float(mine[-1])
    alarm = not low <= latest <= high
    message = (f"live {days}-day return {latest:+.2%} is outside the backtest's {level:.0%} band "
               f"[{low:+.2%}, {high:+.2%}]" if alarm else
               f"live {days}-day return {latest:+.2%} inside the backtest's band [{low:+.2%}, {high:+.2%}]")
    return {"alarm": alarm, "message": message, "band": [float(low), float(high)], "latest": latest}


def ledger_report(store: RunStore, run_id: str | None = None) -> dict:
    """CLI.md's `ledger` keys: days, equity, backtest_equity, max_daily_gap_bps; plus dates, daily
    gaps, the alarm against the run's latest recorded backtest and the ledger's last book."""
    ledgers = [row for row in store.ledgers() if run_id is None or row["run_id"] == run_id]
    if not ledgers:
        raise ValueError(f"no paper ledger{f' for run {run_id}' if run_id else ''} in {store.path}: "
                         "issue signals for a live model first")
    row = ledgers[0]
    frame = PaperLedger(store, row["run_id"], row["dataset"]).frame()
    portfolio = bool(frame["book"].notna().any())
    rec = reconcile_portfolio(frame) if portfolio else reconcile(frame)
    recorded = [b for b in store.list_backtests(row["run_id"]) if not b["config"].get("in_sample")
                and (b["config"].get("kind") == "portfolio") == portfolio]
    reference = np.array([]) if not recorded else _backtest_returns(recorded[0])
    last = frame.iloc[-1]
    book = {"date": f"{frame.index[-1]:%Y-%m-%d}", "quantity": last["quantity"], "cash": last["cash"],
            "signal": None if pd.isna(last["signal"]) else int(last["signal"]),
            "checkpoint_sha256": last["checkpoint_sha256"]}
    if portfolio:  # weights held at the close and the targets decided there (null: not a decision day)
        held = json.loads(last["book"])
        book.update(quantity=None, weights=held["held"], units=held["units"], target=held["target"])
    return {"ledger": row["ledger"], "run_id": row["run_id"], "dataset": row["dataset"], "days": len(frame),
            "portfolio": portfolio, "dates": [f"{d:%Y-%m-%d}" for d in frame.index],
            "equity": rec["equity"].tolist(), "backtest_equity": rec["backtest_equity"].tolist(),
            "gap_bps": rec["gap_bps"].tolist(), "max_daily_gap_bps": float(rec["gap_bps"].abs().max()),
            "alarm": {**interval_alarm(rec["daily_return"].to_numpy(), reference),
                      "reference": recorded[0]["backtest_id"] if recorded else None},
            "book": book}


def _backtest_returns(record: dict) -> np.ndarray:
    data = record["frame_json"]
    data = json.loads(data) if isinstance(data, str) else data
    data = data.get("daily", data)  # a portfolio backtest keeps its daily frame under "daily"
    return np.asarray(data["data"], dtype=object)[:, data["columns"].index("strategy_return")].astype(np.float64)


__all__ = ["BAND_DAYS", "CAPITAL", "Book", "PaperLedger", "book_of", "interval_alarm", "ledger_key", "ledger_report",
           "ledger_rows", "reconcile"]
