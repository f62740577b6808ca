"""The paper ledger: append-only at the database level, books in shares and cash that agree with the
next-open backtest of the same bars and signals within 1 bp a day, and limit-day fills blocked as the
backtest blocks them; orders respect T+1 and limit days."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
import sqlite_utils

from engine.backtest.ashare import daily_limits, limit_days
from engine.backtest.run import run_backtest
from engine.config import BacktestConfig
from engine.data import load_bars
from engine.jobs.signal import Holding, plan_order
from engine.ledger import PaperLedger, interval_alarm, ledger_rows, reconcile
from engine.store import MIGRATIONS, RunStore

CFG = BacktestConfig(ashare_rules=True, cost_bps=3, slippage_bps=2, stamp_duty_bps=10)


def momentum(close: pd.Series) -> pd.Series:
    """A causal rule that trades often: position from the sign and size of the 5-day return."""
    return (5 + 50 * close.pct_change(5)).clip(0, 10).fillna(5).round().astype(int)


@pytest.fixture
def spdb():
    bars = load_bars("spdb", adjust=False)
    frame = bars.frame.loc["2015-01-01":"2016-12-31"]
    return bars, frame, momentum(frame["close"])


def test_paper_pnl_equals_the_backtest_within_1bp_a_day(tmp_path, spdb):
    bars, frame, signals = spdb
    ledger = PaperLedger(RunStore(tmp_path / "runs.db"), "price-x", "spdb")
    for chunk in (signals.iloc[:1], signals.iloc[1:200], signals.iloc[200:201], signals.iloc[201:]):  # day by day
        ledger.append(frame["close"], frame["open"], chunk, CFG, instrument=bars.instrument, checkpoint_sha256="c0")
    paper = ledger.frame()
    backtest = run_backtest(frame["close"], signals, CFG, opens=frame["open"], instrument=bars.instrument)
    gaps = (paper["daily_return"].to_numpy() - backtest.frame["strategy_return"].to_numpy()) * 1e4
    assert len(paper) == len(frame) and np.abs(gaps).max() < 1.0
    assert (paper["fee"] > 0).sum() > 100  # it really traded, with costs
    assert np.abs(reconcile(paper)["gap_bps"]).max() < 1.0
    assert (paper["checkpoint_sha256"] == "c0").all()


def test_the_ledger_refuses_edits_and_deletes(tmp_path, spdb):
    bars, frame, signals = spdb
    store = RunStore(tmp_path / "runs.db")
    ledger = PaperLedger(store, "price-x", "spdb")
    ledger.append(frame["close"], frame["open"], signals.iloc[:20], CFG, instrument=bars.instrument,
                  checkpoint_sha256="c0")
    store.mark_live("price-x", "spdb")
    for sql in ("UPDATE ledger_days SET cash = 2", "DELETE FROM ledger_days", "UPDATE live_marks SET live = 0"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.db.execute(sql)
    with pytest.raises(sqlite3.IntegrityError):  # a day already recorded cannot be written again
        store.append_ledger([{**ledger.rows()[-1], "created": None}])
    assert len(ledger.rows()) == 20


def test_no_buy_fills_at_a_limit_up_open_and_no_sell_at_a_limit_down_open(tmp_path):
    bars = load_bars("spdb", adjust=False)
    frame = bars.frame.loc["2001-01-01":"2020-12-31"]  # five limit-up opens and one limit-down open
    close = frame["close"]
    up, down = limit_days(close.shift(1).to_numpy(), frame["open"].to_numpy(),
                          daily_limits(bars.instrument, frame.index))
    ledger = PaperLedger(RunStore(tmp_path / "runs.db"), "price-x", "spdb")
    wanted = pd.Series(np.where(np.arange(len(frame)) % 2, 10, 0), index=frame.index)  # flip daily
    ledger.append(close, frame["open"], wanted, CFG, instrument=bars.instrument, checkpoint_sha256="c0")
    paper = ledger.frame()
    assert up.any() and down.any()
    assert (paper["traded_quantity"][up] <= 1e-12).all() and (paper["traded_quantity"][down] >= -1e-12).all()
    blocked = paper["blocked"]
    assert blocked[up].str.startswith("limit-up").any() and blocked[down].str.startswith("limit-down").any()
    assert np.abs(reconcile(paper)["gap_bps"]).max() < 1.0  # the backtest blocks the same fills


def test_orders_respect_t1_and_limit_days():
    bars = load_bars("spdb", adjust=False)
    frame = bars.frame
    up, _ = limit_days(frame["close"].shift(1).to_numpy(), frame["open"].to_numpy(),
                       daily_limits(bars.instrument, frame.index))
    day = np.flatnonzero(up)[0]
    asof, fill = frame.index[day - 1], frame.index[day]
    close = float(frame["close"].iloc[day - 1])
    buy = plan_order(bars.instrument, 10, Holding(quantity=0.0), 1e6, close, asof, ashare=True,
                     fill_open=float(frame["open"].iloc[day]))
    assert buy.side == "buy" and buy.limit_up == pytest.approx(float(frame["open"].iloc[day]))
    assert "limit-up" in buy.blocked and buy.fill_day == f"{fill:%Y-%m-%d}"
    sell = plan_order(bars.instrument, 0, Holding(quantity=1000.0, bought_today=400.0), 0.0, close, asof, ashare=True)
    assert sell.side == "sell" and sell.size == 600.0 and sell.blocked.startswith("T+1")
    assert sell.rule.startswith("no sell at a limit-down open")


def test_alarm_when_live_returns_leave_the_backtest_band():
    rng = np.random.default_rng(0)
    reference = rng.normal(0.0005, 0.01, 500)
    assert not interval_alarm(reference[-40:], reference)["alarm"]
    crash = np.concatenate([reference[:20], np.full(20, -0.02)])
    alarm = interval_alarm(crash, reference)
    assert alarm["alarm"] and "outside" in alarm["message"]


def test_a_v2_history_migrates_keeping_its_ledger_and_marks_append_only(tmp_path, spdb):
    """Schema v3 (portfolio marks and books) adds columns to a v2 file: old rows and triggers stay."""
    bars, frame, signals = spdb
    path = tmp_path / "runs.db"
    db = sqlite_utils.Database(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    for migrate in MIGRATIONS[:2]:  # the file as the previous release left it
        migrate(db)
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    db.execute("INSERT INTO live_marks (run_id, dataset, live, at) VALUES ('price-x', 'spdb', 1, '2024-01-01')")
    old = [{**r, "ledger": "price-x@spdb", "run_id": "price-x", "dataset": "spdb", "instrument": bars.instrument,
            "checkpoint_sha256": "c0", "config": "{}", "created": "2024-01-01"}
           for r in ledger_rows(None, frame["close"], frame["open"], signals.iloc[:5], CFG, instrument=bars.instrument)]
    db["ledger_days"].insert_all(old)
    db.conn.commit()
    db.close()

    store = RunStore(path)
    assert store.schema_version() == 3
    assert store.live_models() == [{"run_id": "price-x", "dataset": "spdb", "at": "2024-01-01", "config": None}]
    assert [r["date"] for r in store.ledger_days("price-x@spdb")] == [r["date"] for r in old]
    assert all(r["book"] is None for r in store.ledger_days("price-x@spdb"))
    for sql in ("UPDATE ledger_days SET book = '{}'", "DELETE FROM live_marks"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.db.execute(sql)
