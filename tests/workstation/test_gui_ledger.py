"""The Ledger panel (issue 16): a tiny run marked live from the History selection, Tomorrow's signals off the UI
thread fill the orders table and offer the CSV, Update data from a newer export lists a revised bar with the
'trained on' warning, and after days of new bars the panel's paper and backtest curves are ledger_report's
numbers with a gap under 1 bp; a ledger whose returns leave the backtest's band raises the red banner."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from engine import cli
from engine.backtest.run import run_backtest
from engine.config import BacktestConfig, to_dict
from engine.data import load_bars
from engine.jobs.backtest import backtest_frame_json
from engine.ledger import PaperLedger, ledger_report
from tests.workstation.helpers import screenshot_path
from workstation.wizards.mark_live import MarkLiveDialog

TINY = ["--set", "d_model=32", "--set", "n_layers=2", "--set", "n_heads=2", "--set", "kv_lora_rank=16",
        "--set", "qk_nope_head_dim=8", "--set", "qk_rope_head_dim=8", "--set", "v_head_dim=8",
        "--set", "ffn_hidden=64"]


def export(frame: pd.DataFrame, path: Path) -> str:
    """A terminal-style export of these bars."""
    out = frame[["open", "high", "low", "close", "volume"]].copy()
    out.index = out.index.strftime("%Y-%m-%d")
    out.index.name = "Date"
    out.to_csv(path)
    return str(path)


def issue_signals(qtbot, panel):
    with qtbot.waitSignal(panel.signals_issued, timeout=120_000) as issued:
        qtbot.mouseClick(panel.buttons["signals"], Qt.MouseButton.LeftButton)
    return issued.args[0]


def test_live_run_day_by_day_through_the_panel(qtbot, window, tmp_path, monkeypatch):
    frame = load_bars("spx").frame.loc["2010-01-01":]
    data = export(frame.iloc[:-3], tmp_path / "spx_export.csv")
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli.main(["--db", str(window.store.path), "--json", "train-price", "--data", data, "--preset", "tiny",
                         *TINY, "--max-steps", "4", "--batch-size", "16", "--seed", "3"])
    assert code == 0
    run_id = json.loads(buf.getvalue())["run_id"]
    window.history_panel.refresh()
    window.history_panel.select([run_id])
    panel = window.ledger_panel
    window.actions_["mark_live"].trigger()  # the Run menu's Mark live… asks for the dataset of the selected run
    dialog = panel.findChild(MarkLiveDialog)
    assert dialog is not None and dialog.dataset.currentText() == window.store.get_run(run_id)["dataset"]
    dialog.dataset.setEditText(data)
    assert not dialog.portfolio.isEnabled()  # one instrument: no portfolio to build
    qtbot.mouseClick(dialog.mark, Qt.MouseButton.LeftButton)
    assert panel.current_model() == (run_id, data) and panel.live.count() == 1
    assert window.store.live_models()[0]["config"] is None

    saved: list[str] = []  # the save dialog is offered after each issue; here the user picks a file each time
    orders_csv = tmp_path / "orders.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (saved.append(a[2]) or str(orders_csv), "CSV files (*.csv)"))
    first = issue_signals(qtbot, panel)
    assert first.asof == f"{frame.index[-4]:%Y-%m-%d}" and first.ledger_days == 1
    assert panel.orders.rowCount() == len(first.orders)
    for row, order in enumerate(first.orders):
        assert panel.orders.item(row, 0).text() == order.instrument
        assert panel.orders.item(row, 1).text() == order.side
        assert float(panel.orders.item(row, 2).text()) == float(f"{order.size:.6g}")
    assert first.orders, "a fresh ledger starts in cash: a long target is a buy order, a flat one is none"
    assert saved[-1].endswith(f"orders-{first.asof}.csv")
    lines = orders_csv.read_text().splitlines()
    assert lines[0].startswith("asof,instrument,side,size") and len(lines) == 1 + len(first.orders)

    revised_day = frame.index[100]  # inside the run's training period
    for day in (3, 2, 1):  # each evening a newer export arrives; the first one also revises an old close
        newer_frame = frame.iloc[: len(frame) - day + 1].copy()
        if day == 3:
            newer_frame.loc[revised_day, "close"] += 1.0
        newer = export(newer_frame if day == 3 else newer_frame.iloc[-20:], tmp_path / f"download_{day}.csv")
        with qtbot.waitSignal(panel.updated, timeout=60_000) as updated:
            panel.start_update(data, newer)
        update = updated.args[0]
        assert update.added == 1
        table = panel.update_dialog.revisions
        if day == 3:
            assert table.rowCount() == 1 and len(update.revised) == 1
            assert [table.item(0, c).text() for c in range(3)] == [update.revised[0].instrument,
                                                                    f"{revised_day:%Y-%m-%d}", "close"]
            assert float(table.item(0, 4).text()) == float(f"{frame.loc[revised_day, 'close'] + 1.0:g}")
            assert panel.update_dialog.warnings.isVisibleTo(panel.update_dialog)
            assert run_id in panel.update_dialog.warnings.text() and "trained on 1 revised day" in \
                panel.update_dialog.warnings.text()
            assert panel.update_dialog.apply.isVisibleTo(panel.update_dialog)
        else:
            assert table.rowCount() == 0
        panel.update_dialog.close()
        issued = issue_signals(qtbot, panel)
        assert issued.asof == f"{frame.index[-day]:%Y-%m-%d}" and issued.ledger_days == 1

    expected = ledger_report(window.store, run_id)
    assert expected["days"] == 4
    x, paper = panel.paper_curve.getData()
    _, backtest = panel.backtest_curve.getData()
    np.testing.assert_array_equal(paper, expected["equity"])
    np.testing.assert_array_equal(backtest, expected["backtest_equity"])
    assert list(pd.to_datetime(x, unit="s").strftime("%Y-%m-%d")) == expected["dates"]
    gap = float(re.search(r"Largest daily gap ([0-9.]+) bp", panel.gap_label.text()).group(1))
    assert gap == round(expected["max_daily_gap_bps"], 4) and gap < 1.0
    assert "agree within 1 bp" in panel.gap_label.text()
    assert not panel.banner.isVisible()  # four days: no 20-day return to compare yet
    heights = panel.gap_bars.opts["height"]
    np.testing.assert_array_equal(heights, expected["gap_bps"])

    window.docks["ledgerDock"].show()
    window.docks["ledgerDock"].raise_()
    window.resize(1400, 860)
    qtbot.wait(50)  # let the dock lay out before the grab
    window.grab().save(str(screenshot_path("ledger_single.png", tmp_path)))


def _ledger(store, bars, days: slice, reference: slice) -> str:
    """A run whose recorded backtest (fully long over `reference`) is the band, and whose paper ledger is
    fully long over `days` of the same instrument."""
    cfg = BacktestConfig()
    close, opens = bars.frame["close"], bars.frame["open"]
    run_id = store.create_run("price", dataset="spx", fingerprint=bars.fingerprint, config={}, seed=0,
                              device="cpu", status="finished")
    ref = close.loc[reference]
    result = run_backtest(ref, pd.Series(10.0, index=ref.index), cfg, opens=opens.loc[reference],
                          instrument=bars.instrument)
    store.add_backtest(run_id, dataset="spx", config=to_dict(cfg), metrics={}, baselines={},
                       frame_json=backtest_frame_json(result))
    live = close.loc[days]
    PaperLedger(store, run_id, "spx").append(close, opens, pd.Series(10, index=live.index), cfg,
                                             instrument=bars.instrument, checkpoint_sha256="")
    store.mark_live(run_id, "spx")
    return run_id


def test_alarm_banner_when_live_returns_leave_the_backtest_band(qtbot, window):
    bars = load_bars("spx")
    store, panel = window.store, window.ledger_panel
    calm = _ledger(store, bars, slice("2017-03-01", "2017-06-30"), slice("2016-07-01", "2017-12-31"))
    crash = _ledger(store, bars, slice("2008-08-15", "2008-10-31"), slice("2016-07-01", "2017-12-31"))
    window.docks["ledgerDock"].show()
    window.docks["ledgerDock"].raise_()
    panel.refresh()
    rows = {panel.live.item(i).data(Qt.ItemDataRole.UserRole)[0]: i for i in range(panel.live.count())}

    with qtbot.waitSignal(panel.shown) as shown:
        panel.live.setCurrentRow(rows[crash])
    alarm = ledger_report(store, crash)["alarm"]
    assert shown.args[0]["run_id"] == crash and alarm["alarm"]
    assert panel.banner.isVisible() and alarm["message"] in panel.banner.text()
    assert "outside the backtest's 95% band" in panel.banner.text()

    with qtbot.waitSignal(panel.shown):
        panel.live.setCurrentRow(rows[calm])
    assert not ledger_report(store, calm)["alarm"]["alarm"]
    assert not panel.banner.isVisible()


def test_a_live_portfolio_shows_its_weights(qtbot, window, tmp_path):
    """A portfolio ledger on us12 (scores: the trailing 20-day return, a causal stand-in for a model's
    forecasts) is drawn as ledger_report's numbers, its book as weights; its orders list shares per name."""
    from engine.data.universe import load_universe
    from engine.jobs.signal import SignalReport, portfolio_orders
    from engine.portfolio.backtest import Forecasts, Market
    from engine.portfolio.construct import PortfolioConfig
    from engine.portfolio.ledger import PORTFOLIO, config_json, portfolio_ledger_rows

    store, panel = window.store, window.ledger_panel
    tables = load_universe("us12").tables
    market = Market.from_tables(tables)
    momentum = np.log(pd.DataFrame(market.close).pct_change(20, fill_method=None) + 1.0).to_numpy()[..., None]
    forecasts = Forecasts(momentum, np.full_like(momentum, np.nan), np.full_like(momentum, np.nan))
    pcfg, cfg = PortfolioConfig(method="inverse_vol", top_k=4, rebalance=5, max_weight=0.4), BacktestConfig(cost_bps=10)
    run_id = store.create_run("price", dataset="us12:AAPL", fingerprint="", config={}, seed=0, device="cpu",
                              status="finished")
    ledger = PaperLedger(store, run_id, "us12")
    days = np.flatnonzero((market.dates >= "2022-06-01") & (market.dates <= "2022-08-31"))
    ledger.record(portfolio_ledger_rows([], market, forecasts, days, pcfg, cfg), instrument=PORTFOLIO,
                  checkpoint_sha256="", config=config_json(pcfg, cfg))
    store.mark_live(run_id, "us12", config=json.loads(config_json(pcfg, cfg)))
    window.docks["ledgerDock"].show()
    window.docks["ledgerDock"].raise_()
    with qtbot.waitSignal(panel.shown) as shown:
        panel.refresh()
    report = shown.args[0]
    assert report["portfolio"] and report["max_daily_gap_bps"] < 1.0
    np.testing.assert_array_equal(panel.paper_curve.getData()[1], report["equity"])
    np.testing.assert_array_equal(panel.backtest_curve.getData()[1], report["backtest_equity"])
    held = {n: w for n, w in report["book"]["weights"].items() if w > 5e-5}
    assert len(held) == 4 and all(f"{n} {w:.1%}" in panel.summary.text() for n, w in held.items())

    rows = ledger.rows()
    decided = next(json.loads(r["book"]) for r in reversed(rows) if json.loads(r["book"])["target"])
    orders = portfolio_orders(market, decided["target"], (held_units := json.loads(rows[-1]["book"])["units"],
                                                          rows[-1]["cash"]), None, cfg, market.dates[days[-1]])
    assert held_units and orders
    targets = [{"instrument": n, "weight": w, "rebalance": True, "fill": "close", "run_id": run_id,
                "checkpoint_sha256": ""} for n, w in decided["target"].items()]  # us12 has no opens
    panel.show_signals(SignalReport(f"{market.dates[days[-1]]:%Y-%m-%d}", targets, orders))
    assert panel.orders.rowCount() == len(orders) and panel.orders.item(0, 3).text() == "shares"
    assert all(f"{n} {w:.1%}" in panel.orders_title.text() for n, w in decided["target"].items() if w > 5e-5)
    assert panel.orders_title.text().startswith(f"Orders at the close of {market.dates[days[-1]]:%Y-%m-%d} ")
    window.resize(1400, 860)
    qtbot.wait(50)
    window.grab().save(str(screenshot_path("ledger_portfolio.png", tmp_path)))


def test_a_run_marked_live_as_a_portfolio_in_the_dialog_trades_us12_as_one_book(qtbot, window, tmp_path, monkeypatch):
    """Mark live on a universe offers a portfolio with the backtest wizard's fields; the mark keeps the config the
    CLI's mark-live --portfolio keeps for the same options; two evenings of a us12 export later the panel shows the
    book's weights, and the orders (us12 has no opens) are for the close."""
    from engine.data.samples import sample_path

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli.main(["--db", str(window.store.path), "--json", "train-price", "--data", "us12:AAPL", "--data",
                         "us12:BAC", "--start", "2015-01-01", "--preset", "tiny", *TINY, "--max-steps", "4",
                         "--batch-size", "16", "--seed", "1"])
    assert code == 0
    run_id = json.loads(buf.getvalue())["run_id"]
    wide = pd.read_csv(sample_path("us12"))
    held = tmp_path / "us12_export.csv"  # the universe as exported each evening
    wide.iloc[:-3].to_csv(held, index=False)
    window.history_panel.refresh()
    window.history_panel.select([run_id])
    panel = window.ledger_panel
    window.actions_["mark_live"].trigger()
    dialog = panel.findChild(MarkLiveDialog)
    assert dialog.dataset.findText("us12") >= 0  # the Data panel's universes are offered
    assert not dialog.portfolio.isEnabled() and not dialog.settings.isEnabled()  # the run's member: one instrument
    dialog.dataset.setEditText("")
    qtbot.mouseClick(dialog.mark, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and "Name the dataset" in dialog.error.text()
    dialog.dataset.setEditText(str(held))
    assert dialog.portfolio.isEnabled() and not dialog.error.text()
    qtbot.mouseClick(dialog.portfolio, Qt.MouseButton.LeftButton)
    fields, costs = dialog.portfolio_fields, dialog.costs
    assert dialog.settings.isEnabled() and not fields.max_turnover.isEnabled()  # mean_variance only
    fields.method.setCurrentText("inverse_vol")
    fields.top_k.setValue(4)
    fields.rebalance.setValue(2)
    fields.max_weight.setValue(0.4)
    costs.cost_bps.setValue(10)
    dialog.grab().save(str(tmp_path / "mark_live.png"))
    qtbot.mouseClick(dialog.mark, Qt.MouseButton.LeftButton)
    (mark,) = window.store.live_models()
    assert mark["dataset"] == str(held) and panel.current_model() == (run_id, str(held))
    assert mark["config"]["portfolio"]["method"] == "inverse_vol" and mark["config"]["backtest"]["cost_bps"] == 10
    with redirect_stdout(io.StringIO()):  # the same options on the command line mark the same config
        assert cli.main(["--db", str(window.store.path), "--json", "mark-live", "--run", run_id, "--data", str(held),
                         "--portfolio", "--method", "inverse_vol", "--top-k", "4", "--rebalance", "2",
                         "--max-weight", "0.4", "--cost-bps", "10"]) == 0
    assert window.store.live_models()[0]["config"] == mark["config"]

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))  # no CSV this time
    for evening in (3, 2, 1):  # rebalance 2: decisions on the first and the third
        wide.iloc[:len(wide) - evening + 1].to_csv(held, index=False)
        issued = issue_signals(qtbot, panel)
        assert issued.asof == wide["Date"].iloc[-evening] and issued.ledger_days == 1
        weights = {t["instrument"]: t["weight"] for t in issued.targets}
        assert len(weights) == 12 and 0 < sum(weights.values()) <= 1.0 + 1e-9
        assert panel.orders_title.text().startswith(f"Orders at the close of {issued.asof} ")
        assert panel.orders.rowCount() == len(issued.orders) and bool(issued.orders) == (evening != 2)
        assert all(panel.orders.item(i, 3).text() == "shares" for i in range(panel.orders.rowCount()))
    report = ledger_report(window.store, run_id)
    assert report["portfolio"] and report["days"] == 3 and report["max_daily_gap_bps"] < 1.0
    held_weights = {n: w for n, w in report["book"]["weights"].items() if w > 5e-5}
    assert 0 < len(held_weights) <= 4 and all(f"{n} {w:.1%}" in panel.summary.text() for n, w in held_weights.items())
    window.docks["ledgerDock"].show()
    window.docks["ledgerDock"].raise_()
    window.resize(1400, 860)
    qtbot.wait(50)
    window.grab().save(str(screenshot_path("ledger.png", tmp_path)))  # the README's
