"""A live portfolio (issue 16): on the bundled us12 universe with a tiny price run, the paper ledger appended
day by day from data cut at each evening (forecasts and weights from the latest bar only) earns the portfolio
backtest's equity on the same days within 1 bp a day; `signal` states target weights and orders in shares that
move the current book to them; mark-live keeps the portfolio config, and `ledger` reconciles the book."""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import redirect_stdout
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from engine import cli
from engine.config import BacktestConfig
from engine.data.samples import sample_path
from engine.data.universe import load_universe
from engine.events import run_to_end
from engine.forecast import load_price_model
from engine.jobs.portfolio import universe_forecasts
from engine.jobs.signal import CurrentBook, Holding, Order, portfolio_orders
from engine.ledger import PaperLedger
from engine.portfolio.backtest import Market, portfolio_backtest
from engine.portfolio.construct import PortfolioConfig
from engine.portfolio.ledger import config_json, portfolio_ledger_rows, reconcile_portfolio
from engine.store import RunStore

TINY = ["--set", "d_model=32", "--set", "n_layers=1", "--set", "n_heads=2", "--set", "kv_lora_rank=16",
        "--set", "qk_nope_head_dim=8", "--set", "qk_rope_head_dim=8", "--set", "v_head_dim=8",
        "--set", "ffn_hidden=64"]
FIRST, LAST = "2021-03-01", "2021-06-30"  # the ledger's days
CUTS = ("2021-03-01", "2021-03-02", "2021-03-26", "2021-03-29", "2021-05-14", LAST)  # evenings the ledger is appended


def call(db, *argv: str) -> dict:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli.main(["--json", "--db", str(db), *argv])
    assert code == 0, (argv, buf.getvalue())
    return json.loads(buf.getvalue())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny price run (4 steps) and the us12 universe: (db, run id, tables)."""
    db = tmp_path_factory.mktemp("live") / "runs.db"
    run = call(db, "train-price", "--data", "us12:AAPL", "--data", "us12:BAC", "--start", "2015-01-01",
               "--preset", "tiny", *TINY, "--max-steps", "4", "--batch-size", "16", "--seed", "1")["run_id"]
    return db, run, load_universe("us12").tables


def fresh_store(db, tmp_path) -> RunStore:
    """A copy of the trained history: each test keeps its own ledgers."""
    copy = tmp_path / "runs.db"
    with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    return RunStore(copy)


def cut(tables, last: str):
    """The universe as it was held on the evening of `last`."""
    return [replace(t, frame=t.frame.loc[:last]) for t in tables if len(t.frame.loc[:last])]


@pytest.mark.parametrize("pcfg", [
    PortfolioConfig(method="inverse_vol", top_k=4, rebalance=5, band=0.005, max_weight=0.4),
    PortfolioConfig(method="mean_variance", rebalance=3, max_weight=0.3, max_turnover=0.5, risk_aversion=2.0),
], ids=["inverse_vol_band", "mean_variance"])
def test_paper_equity_equals_the_portfolio_backtest_within_1bp_a_day(trained, tmp_path, pcfg):
    db, run, tables = trained
    store = fresh_store(db, tmp_path)
    price = load_price_model(run, store)
    cfg = BacktestConfig(cost_bps=10, slippage_bps=5)
    ledger = PaperLedger(store, run, "us12")
    for previous, evening in zip((None, *CUTS), CUTS):  # each evening: the data held then, the new days only
        held = cut(tables, evening)
        market = Market.from_tables(held)
        days = np.flatnonzero((market.dates > pd.Timestamp(previous or "1900")) & (market.dates >= FIRST))
        fc = run_to_end(universe_forecasts(price, market, held, f"{market.dates[days[0]]:%Y-%m-%d}", None))
        ledger.record(portfolio_ledger_rows(ledger.rows(), market, fc, days, pcfg, cfg), instrument="portfolio",
                      checkpoint_sha256=price.sha256, config=config_json(pcfg, cfg))
    paper = ledger.frame()

    market = Market.from_tables(tables)
    forecasts = run_to_end(universe_forecasts(price, market, tables, FIRST, LAST))
    backtest = portfolio_backtest(market, forecasts, pcfg, replace(cfg, start=FIRST, end=LAST))
    assert list(paper.index) == list(backtest.frame.index) and len(paper) > 80
    gaps = (paper["daily_return"] - backtest.frame["strategy_return"]).abs() * 1e4
    assert gaps.max() < 1.0, gaps.sort_values().tail()
    np.testing.assert_allclose(paper["equity"], backtest.frame["equity"], rtol=1e-6)
    assert backtest.metrics["turnover"] > 0 and (paper["fee"] > 0).sum() > 5  # it traded, with costs
    decided = paper["book"].map(lambda b: json.loads(b)["target"] is not None).to_numpy()
    np.testing.assert_array_equal(decided, np.isfinite(backtest.targets.to_numpy()).all(-1))
    if pcfg.band is not None:  # drifts past the band decided too: 37 decisions where the schedule alone has 18
        assert decided.sum() > -(-len(paper) // pcfg.rebalance)
    assert np.abs(reconcile_portfolio(paper)["gap_bps"]).max() < 1.0  # the recorded book replays too


def weights_after(orders, units: dict, cash: float, cfg: BacktestConfig) -> dict:
    """The book's weights at the orders' reference prices once they fill, fees paid."""
    units = dict(units)
    for o in orders:
        notional = o.size * o.reference_price
        fee = notional * ((cfg.cost_bps + cfg.slippage_bps) / 1e4 + (cfg.stamp_duty_bps / 1e4 if o.side == "sell"
                                                                       else 0.0))
        units[o.instrument] = units.get(o.instrument, 0.0) + (o.size if o.side == "buy" else -o.size)
        cash += (-notional if o.side == "buy" else notional) - fee
    prices = {o.instrument: o.reference_price for o in orders}
    value = {n: u * prices[n] for n, u in units.items() if u}
    equity = cash + sum(value.values())
    return {n: v / equity for n, v in value.items()}


def test_signal_issues_weights_and_orders_that_reach_them(trained, tmp_path):
    db, run, tables = trained
    store = fresh_store(db, tmp_path)
    wide = pd.read_csv(sample_path("us12"))
    held = tmp_path / "us12_export.csv"  # the universe as exported each evening, three evenings before the last
    wide.iloc[:-3].to_csv(held, index=False)
    call(store.path, "mark-live", "--run", run, "--data", str(held), "--portfolio", "--method", "topk", "--top-k", "3",
         "--rebalance", "2", "--cost-bps", "10")
    (mark,) = store.live_models()
    assert mark["config"]["portfolio"]["top_k"] == 3 and mark["config"]["backtest"]["cost_bps"] == 10
    cfg = BacktestConfig(cost_bps=10)
    issued = []
    for evening in (3, 2, 1):
        wide.iloc[:len(wide) - evening + 1].to_csv(held, index=False)
        issued.append(call(store.path, "signal"))
        assert issued[-1]["asof"] == wide["Date"].iloc[-evening] and issued[-1]["ledger_days"] == 1
    rows = PaperLedger(store, run, str(held)).frame()
    books = [json.loads(b) for b in rows["book"]]
    for k, (out, book) in enumerate(zip(issued, books)):
        weights = {t["instrument"]: t["weight"] for t in out["targets"]}
        assert set(weights) == {t.instrument for t in tables} and sum(weights.values()) == pytest.approx(1.0)
        decided = k != 1  # rebalance every 2 days from the first
        assert all(t["rebalance"] == decided for t in out["targets"]) and (book["target"] is not None) == decided
        if not decided:  # the book drifts: its weights are stated, nothing is traded
            assert out["orders"] == [] and weights == pytest.approx(book["held"])
            continue
        target = {n: w for n, w in weights.items() if w > 0}
        assert len(target) == 3 and book["target"] == pytest.approx(weights)
        assert all(o["unit"] == "shares" and o["fill_day"] == out["asof"] for o in out["orders"])  # no opens: the
        prior = books[k - 1]["units"] if k else {}  # backtest fills at the decision's close, from the day before's book
        cash = rows["cash"].iloc[k - 1] if k else 1.0
        orders = [Order(**o) for o in out["orders"]]
        assert weights_after(orders, prior, cash, cfg) == pytest.approx(target)
        assert {o.instrument: o.size for o in orders} == pytest.approx(  # what the paper ledger traded
            {n: abs(book["units"].get(n, 0.0) - prior.get(n, 0.0)) for n in set(prior) | set(book["units"])
             if abs(book["units"].get(n, 0.0) - prior.get(n, 0.0)) > 1e-9})
    report = call(store.path, "ledger", "--run", run)
    assert report["portfolio"] and report["days"] == 3 and report["max_daily_gap_bps"] < 1.0

    target = {n: w for n, w in books[-1]["target"].items() if w > 0}
    outside = next(n for n in books[-1]["target"] if n not in target)
    book = CurrentBook({"AAPL": Holding(quantity=100.0), outside: Holding(quantity=20.0)}, cash=30_000.0)  # a broker's
    market = Market.from_tables(tables)
    moved = portfolio_orders(market, target, ({}, 0.0), book, cfg, market.dates[-1])
    held_units = {n: h.quantity for n, h in book.holdings.items()}
    after = weights_after(moved, held_units, book.cash, cfg)
    assert {n: w for n, w in after.items() if abs(w) > 1e-12} == pytest.approx(target)
    assert {o.instrument for o in moved if o.side == "sell"} >= set(held_units) - set(target)
    with pytest.raises(ValueError, match="XOM, outside the universe"):
        portfolio_orders(market, target, ({}, 0.0), CurrentBook({"XOM": Holding(quantity=1.0)}, 1.0), cfg,
                         market.dates[-1])
