"""Portfolio mode (issue 15): the backtest wizard trades the us12 universe as one book on a tiny price
run, and the Portfolio panel draws the record (stacked weights, equity, risk); History opens a portfolio
backtest there, not in the single-instrument panels."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PySide6.QtWidgets import QWizard

from engine.config import DataConfig, TrainConfig, override
from engine.jobs.portfolio import load_portfolio_frames
from engine.store import RunStore
from tests.engine.helpers import TINY_PRICE, finished_price_run
from tests.workstation.helpers import screenshot_path
from workstation.main_window import MainWindow

TINY = override(TINY_PRICE, dropout=0.0)
FAST = TrainConfig(max_steps=3, batch_size=16, warmup_steps=1, seed=3, precision="fp32", device="cpu")
JOB_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def price_run(tmp_path_factory) -> tuple[RunStore, str]:
    """A tiny price run on three us12 members, tested from the cut dates' 2020 on."""
    store = RunStore(tmp_path_factory.mktemp("portfolio") / "runs.db")
    data = DataConfig(start="2012-01-01", train_end="2017-12-29", val_end="2019-12-31")
    return store, finished_price_run(store, ["us12:AAPL", "us12:JPM", "us12:PEP"], model_cfg=TINY, data_cfg=data,
                                     train_cfg=FAST)


@pytest.fixture
def portfolio_window(make_window, price_run):
    return make_window(price_run[0], size=(1500, 950), join_ms=JOB_TIMEOUT_MS)


def run_portfolio_wizard(window: MainWindow, qtbot, run_id: str):
    wizard = window.open_backtest_wizard(run_id)
    wizard.next()
    period = wizard.period_page
    period.dataset.setCurrentIndex(period.dataset.findData("us12"))
    assert period.is_universe()
    wizard.next()
    assert wizard.currentPage() is wizard.portfolio_page
    page = wizard.portfolio_page.fields
    page.method.setCurrentText("inverse_vol")
    page.top_k.setValue(4)
    page.rebalance.setValue(5)
    page.max_weight.setValue(0.3)
    wizard.next()
    assert wizard.currentPage() is wizard.costs_page
    with qtbot.waitSignal(window.runner.finished, timeout=JOB_TIMEOUT_MS) as blocker:
        wizard.button(QWizard.WizardButton.FinishButton).click()
    return blocker.args[0]


def test_wizard_portfolio_mode_records_a_portfolio_the_panel_draws(portfolio_window, qtbot, price_run, tmp_path):
    store, run_id = price_run
    final = run_portfolio_wizard(portfolio_window, qtbot, run_id)
    assert final.status == "finished", final.error
    record = store.get_backtest(final.backtest_id)
    config = record["config"]
    assert config["kind"] == "portfolio" and config["portfolio"]["top_k"] == 4 and len(config["instruments"]) == 12
    assert config["start"] >= "2020-01-01" and not config["in_sample"]  # the model's test period
    panel = portfolio_window.portfolio_panel
    qtbot.waitUntil(lambda: panel.isVisible() and panel.record is not None)
    assert panel.record["backtest_id"] == final.backtest_id and portfolio_window.backtest_id == final.backtest_id
    daily, weights, contribution = load_portfolio_frames(record)
    top = panel.layers[weights.shape[1]].getData()[1]
    np.testing.assert_allclose(top, weights.sum(axis=1).to_numpy(), atol=1e-12)
    assert top.max() <= 1 + 1e-9 and (weights.to_numpy() > 1e-9).sum(1).max() <= 4
    np.testing.assert_allclose(panel.equity_curve.getData()[1], daily["equity"].to_numpy())
    np.testing.assert_allclose(panel.layers[1].getData()[1], weights.iloc[:, 0].to_numpy())
    assert panel.contribution_table.rowCount() == 12
    assert panel.contribution_table.item(0, 1).text() == f"{contribution.max():+.2%}"  # largest first
    assert panel.title.text().startswith("us12 · inverse_vol")
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen" or os.environ.get("DISPLAY"):
        portfolio_window.docks["portfolioDock"].raise_()
        qtbot.wait(50)
        assert panel.grab().save(str(screenshot_path("portfolio.png", tmp_path)))


def test_history_opens_a_portfolio_backtest_in_the_portfolio_panel(portfolio_window, make_window, qtbot, price_run,
                                                                   tmp_path, monkeypatch):
    store, run_id = price_run
    finished = [b for b in store.list_backtests(run_id) if b["config"].get("kind") == "portfolio"]
    if not finished:
        final = run_portfolio_wizard(portfolio_window, qtbot, run_id)
        assert final.status == "finished", final.error
        backtest_id = final.backtest_id
    else:
        backtest_id = finished[0]["backtest_id"]
    window = make_window(store)  # a fresh session: nothing shown yet
    window.docks["historyDock"].raise_()
    window.history_panel.refresh()
    window.history_panel.select([backtest_id])
    window.history_panel.buttons["show"].click()
    panel = window.portfolio_panel
    qtbot.waitUntil(lambda: panel.record is not None and panel.isVisible())
    assert panel.record["backtest_id"] == backtest_id and window.equity_panel.view is None
    path = tmp_path / "portfolio_signals.csv"
    monkeypatch.setattr("workstation.main_window.QFileDialog.getSaveFileName", lambda *a, **k: (str(path), ""))
    window.export_signals()
    header = path.read_text(encoding="utf-8-sig").splitlines()[0]
    assert header.startswith("date,instrument,weight,rebalance")
