"""The friction a quant noticed (issue 18): typed dates, the data panel's dataset, the remembered
period, strategy-only fields, estimates before Start, labelled special values, colours per market,
legends that leave the data visible, and the session restored."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import QApplication, QWizard

from engine.config import DataConfig, PriceModelConfig, TrainConfig, override
from engine.events import run_to_end
from engine.store import RunStore
from engine.training.price import train_price
from tests.workstation.helpers import SHORT_PERIOD, SMALL_DATASET, fill_train_wizard
from workstation import theme
from workstation.main_window import MainWindow
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
    wizard.stage_page.buttons["both"].setChecked(True)
    page.initializePage()
    assert all(w.isEnabled() for w in page.price_fields())
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
    tiny = override(PriceModelConfig(), d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16, qk_nope_head_dim=8,
                    qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64)
    train = TrainConfig(epochs=1, max_steps=4, batch_size=16, eval_every=2, warmup_steps=1, precision="fp32",
                        device="cpu")
    final = run_to_end(train_price([SMALL_DATASET], model_cfg=tiny, train_cfg=train, store=store,
                                   data_cfg=DataConfig(start=SHORT_PERIOD[0], end=SHORT_PERIOD[1])))
    assert final.status == "finished", final.error
    return store, final.run_id


@pytest.fixture
def trained_window(qtbot, settings, price_run):
    theme.apply(QApplication.instance())
    win = MainWindow(price_run[0])
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.runner.is_running():
        win.runner.cancel()
        with qtbot.waitSignal(win.runner.finished, timeout=JOB_TIMEOUT_MS):
            pass


def test_risk_free_rate_is_entered_as_an_annual_percent(trained_window, price_run):
    wizard = trained_window.open_backtest_wizard(price_run[1])
    wizard.next()
    wizard.next()
    wizard.costs_page.risk_free.setValue(2.5)
    assert wizard.costs_page.risk_free.text().endswith("%")
    assert wizard.request().cfg.risk_free == pytest.approx(0.025)
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
