"""The friction a quant noticed (issue 18): typed dates, the data panel's dataset, the remembered
period, strategy-only fields, estimates before Start, labelled special values, colours per market,
legends that leave the data visible, and the session restored."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import QDate, QSettings, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QWizard

from engine.config import BacktestConfig, DataConfig, TrainConfig
from engine.events import Finished, Progress, run_to_end
from engine.jobs.backtest import backtest_job
from engine.store import RunStore
from tests.engine.helpers import finished_price_run
from tests.workstation.helpers import SHORT_PERIOD, SMALL_DATASET, fill_train_wizard
from workstation import theme
from workstation.main_window import MainWindow
from workstation.panels.backtest_panels import METRIC_ROWS, regime_colours, wants_log
from workstation.panels.history_details import dataset_name
from workstation.wizards.fields import DateField


@pytest.mark.parametrize("typed", ["2015-03-04", "2015-3-4", "20150304"])
def test_a_date_typed_over_the_selected_text_is_taken(qtbot, settings, typed):
    field = DateField()
    qtbot.addWidget(field)
    field.setDateRange(QDate(2004, 8, 19), QDate(2024, 6, 28))
    field.setDate(QDate(2004, 8, 19))
    field.show()
    qtbot.waitExposed(field)
    field.setFocus()
    field.lineEdit().selectAll()
    qtbot.keyClicks(field, typed)
    qtbot.keyClick(field, Qt.Key.Key_Return)
    assert field.date() == QDate(2015, 3, 4)


def test_train_wizard_checks_the_dataset_selected_in_the_data_panel(window):
    window.data_panel.select(SMALL_DATASET)
    wizard = window.open_train_wizard()
    assert wizard.data_page.checked() == [SMALL_DATASET]
    wizard.reject()


def test_train_wizard_remembers_the_period(window):
    wizard = fill_train_wizard(window)
    wizard._remember()  # what accepting does
    wizard.reject()
    window.data_panel.select(SMALL_DATASET)
    wizard = window.open_train_wizard()
    assert wizard.data_page.period() == SHORT_PERIOD
    wizard.reject()


def test_strategy_only_disables_the_price_fields_but_not_the_shared_dropout(window):
    wizard = window.open_train_wizard()
    wizard.stage_page.buttons["strategy"].setChecked(True)
    wizard.model_page.initializePage()
    page = wizard.model_page
    assert not any(w.isEnabled() for w in page.price_fields() if w is not page.dropout)
    assert page.dropout.isEnabled()
    page.head.setCurrentText("point")  # the run's head is fixed too: no point loss to choose
    assert not page.loss.isEnabled()
    wizard.stage_page.buttons["both"].setChecked(True)
    page.initializePage()
    assert all(w.isEnabled() for w in page.price_fields())  # the point head: its loss is a choice again
    page.head.setCurrentText("quantile")  # the point loss follows the head: greyed for any other
    assert not page.loss.isEnabled()
    assert all(w.isEnabled() for w in page.price_fields() if w is not page.loss)
    wizard.reject()


def test_review_shows_windows_steps_and_a_timed_estimate(window):
    wizard = fill_train_wizard(window, max_steps=0)
    review = wizard.review_page
    plan = review.plan
    assert plan is not None and plan.train > 0 and plan.val > 0
    assert plan.steps_per_epoch == plan.train // 16 and plan.total_steps == plan.steps_per_epoch
    assert f"{plan.total_steps:,}" in review.summary.text()
    assert review.measure() > 0
    assert "per step" in review.time_label.text()
    wizard.reject()


def test_zero_max_steps_reads_no_limit(window):
    wizard = window.open_train_wizard()
    wizard.compute_page.max_steps.setValue(0)
    assert wizard.compute_page.max_steps.text() == "no limit"
    wizard.reject()


# --- the backtest wizard: risk-free in annual percent, walk-forward folds ---------------------------

JOB_TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def price_run(tmp_path_factory) -> tuple[RunStore, str]:
    """One tiny finished price run on the short bundled period, in a module-wide history."""
    store = RunStore(tmp_path_factory.mktemp("friction") / "runs.db")
    train = TrainConfig(epochs=1, max_steps=4, batch_size=16, eval_every=2, warmup_steps=1, precision="fp32",
                        device="cpu")
    return store, finished_price_run(store, [SMALL_DATASET], train_cfg=train,
                                     data_cfg=DataConfig(start=SHORT_PERIOD[0], end=SHORT_PERIOD[1]))


@pytest.fixture
def trained_window(make_window, price_run):
    return make_window(price_run[0], join_ms=JOB_TIMEOUT_MS)


def test_risk_free_rate_is_entered_as_an_annual_percent(trained_window, price_run):
    wizard = trained_window.open_backtest_wizard(price_run[1])
    wizard.next()
    wizard.next()
    wizard.costs_page.risk_free.setValue(2.5)
    assert wizard.costs_page.risk_free.text().endswith("%")
    assert wizard.request().cfg.risk_free == pytest.approx(0.025)
    assert wizard.costs_page.risk_aversion.value() == BacktestConfig().risk_aversion
    wizard.costs_page.risk_aversion.setValue(4.5)  # the analytic baseline's lambda
    assert wizard.request().cfg.risk_aversion == pytest.approx(4.5)
    wizard.reject()


def test_walk_forward_folds_run_from_the_backtest_wizard(trained_window, qtbot, price_run):
    store, run_id = price_run
    wizard = trained_window.open_backtest_wizard(run_id)
    wizard.next()
    period = wizard.period_page
    period.folds.setValue(2)
    period.fraction.setValue(0.2)
    assert not period.start.isEnabled() and period.fraction.isEnabled()
    wizard.next()
    with qtbot.waitSignal(trained_window.runner.finished, timeout=JOB_TIMEOUT_MS) as blocker:
        wizard.button(QWizard.WizardButton.FinishButton).click()
    final = blocker.args[0]
    assert final.status == "finished", final.error
    assert len(store.get_backtest(final.backtest_id)["config"]["walk_forward"]) == 2
    assert trained_window.backtest_id == final.backtest_id  # shown like any backtest


# --- colours ----------------------------------------------------------------------------------------

def test_up_colour_follows_the_market_of_the_bars_shown(window):
    p = window.palette_
    assert p.up_down == "market"
    assert p.colours("cn") == (theme.RED, theme.GREEN) and p.colours("us") == (theme.GREEN, theme.RED)
    window.data_panel.select("sse")
    assert window.data_panel.chart.candles._colours == (theme.RED, theme.GREEN)
    window.data_panel.select("aapl")
    assert window.data_panel.chart.candles._colours == (theme.GREEN, theme.RED)
    window.set_up_down("red-up")
    assert window.palette_.colours("us") == (theme.RED, theme.GREEN)


def test_every_baseline_has_its_own_colour_and_regimes_use_neither_up_nor_down(window):
    curves = [window.equity_panel.strategy_curve, *window.equity_panel.baseline_curves.values()]
    colours = {c.opts["pen"].color().name() for c in curves}
    assert len(colours) == len(curves)
    bands = set(regime_colours(window.palette_).values())
    assert not bands & {theme.RED, theme.GREEN}


# --- charts -----------------------------------------------------------------------------------------

def test_data_panel_log_scale_draws_candles_in_log_units_and_is_remembered(window):
    panel = window.data_panel
    panel.select("sse")
    close = panel.chart.frame["close"].to_numpy(float)
    panel.log_scale.setChecked(True)
    assert panel.chart.price_plot.getAxis("left").logMode
    np.testing.assert_allclose(panel.chart.candles._ohlc[3], np.log10(close))
    _low, high = panel.chart.price_plot.vb.viewRange()[1]
    assert high < 10  # a log10 range, not prices in the thousands
    assert QSettings().value("data/log_scale") in (True, "true")


def test_equity_is_logarithmic_by_default_over_a_long_or_wide_span():
    days = pd.bdate_range("2010-01-01", periods=400)
    flat = pd.DataFrame({"strategy_equity": np.linspace(1, 1.5, 400)}, index=days)
    assert not wants_log(flat, ["strategy_equity"])
    assert wants_log(flat.assign(strategy_equity=np.linspace(1, 4, 400)), ["strategy_equity"])
    long = pd.DataFrame({"strategy_equity": 1.0}, index=pd.bdate_range("2010-01-01", "2016-06-01"))
    assert wants_log(long, ["strategy_equity"])


def test_information_ratio_says_what_it_is_measured_against():
    assert dict(METRIC_ROWS)["information_ratio"] == "Information ratio (vs buy and hold, no costs)"


# --- help -------------------------------------------------------------------------------------------

def test_help_lists_every_shortcut_and_links_the_docs(window):
    text = window.shortcuts_html()
    for action in window.actions_.values():
        if not action.shortcut().isEmpty():
            assert action.shortcut().toString(QKeySequence.SequenceFormat.NativeText) in text
    assert "README" in text and "docs" in text


# --- history ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def backtests(price_run) -> list[str]:
    store, run_id = price_run
    return [run_to_end(backtest_job(run_id, SMALL_DATASET, cfg=BacktestConfig(cost_bps=cost), store=store))
            .backtest_id for cost in (0.0, 20.0)]


def test_history_compares_selected_backtests_rebased_and_named_with_the_legend_off_the_data(
        trained_window, backtests):
    history = trained_window.history_panel
    history.select(backtests)
    assert history.compare.isVisible() and history.compare.columnCount() == 2
    labels = [history.compare.horizontalHeaderItem(c).text() for c in range(2)]
    assert all(label.startswith("Alphabet") or "#" in label for label in labels)
    assert all(backtest_id not in label for backtest_id, label in zip(backtests, labels))
    assert all(curve.yData[0] == pytest.approx(1.0) for curve in history.compare_curves)
    assert [curve.name() for curve in history.compare_curves] == labels
    plot = history.equity_widget.getPlotItem()
    legend = history.equity_widget.legend.sceneBoundingRect()
    assert not legend.intersects(plot.vb.sceneBoundingRect())


def test_history_details_are_formatted_not_json(trained_window, price_run, backtests):
    history = trained_window.history_panel
    history.select([price_run[1]])
    text = history.details.toPlainText()
    assert "Split" in text and "Training" in text and "{" not in text
    history.select([backtests[0]])
    assert "Information ratio (vs buy and hold, no costs)" in history.details.toPlainText()


def test_datasets_are_named_by_file_name_not_path():
    assert dataset_name("/home/q/data/600000.csv, goog") == "600000.csv, goog"


# --- session ----------------------------------------------------------------------------------------

def test_the_last_backtest_comes_back_after_a_relaunch(trained_window, qtbot, backtests, price_run):
    trained_window.show_backtest(backtests[1])
    trained_window.close()
    again = MainWindow(price_run[0])
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.backtest_id == backtests[1], timeout=10_000)
    assert again.equity_panel.view.backtest_id == backtests[1]


def _until_cancelled(cancel):
    step = 0
    while not cancel.cancelled:
        yield Progress(step, 1_000_000, "waiting")
        step += 1
        time.sleep(0.01)  # a job thread's pace, not a test wait
    return Finished(run_id="first", status="cancelled")


def _at_once(cancel):
    yield Progress(0, 1, "at once")
    return Finished(run_id="second", status="finished")


def test_a_second_job_queues_and_cancel_stops_only_the_running_one(window, qtbot):
    results = []
    window.runner.finished.connect(results.append)
    window._start_job(_until_cancelled, "first", "trainingDock")
    window._start_job(_at_once, "second", "trainingDock")
    assert window.status.queue_label.text() == "Queued: 1" and window.queue
    window.actions_["cancel"].trigger()
    qtbot.waitUntil(lambda: len(results) == 2, timeout=10_000)
    assert [(r.run_id, r.status) for r in results] == [("first", "cancelled"), ("second", "finished")]
    assert not window.queue and not window.status.queue_label.isVisible()
    assert not window.actions_["cancel"].isEnabled()
