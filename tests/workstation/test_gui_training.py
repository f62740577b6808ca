"""Training from the GUI: the wizard, live plots, the run history, cancel, close, imports, latency."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QElapsedTimer, QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from engine.training.price import price_split
from tests.workstation.helpers import (
    SHORT_PERIOD,
    SMALL_DATASET,
    fill_train_wizard,
    screenshot_path,
    start_training,
    start_wizard,
)
from workstation.panels.data_panel import IMPORTED_KEY

pytestmark = pytest.mark.slow
JOB_TIMEOUT_MS = 120_000


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_wizard_trains_a_tiny_model_to_a_recorded_finished_run(window, qtbot):
    steps = start_training(window, max_steps=8)
    with qtbot.waitSignal(window.runner.finished, timeout=JOB_TIMEOUT_MS) as blocker:
        pass
    final = blocker.args[0]
    assert final.status == "finished", final.error
    panel = window.training_panel
    x, y = panel.train_curve.getData()
    assert len(steps) == 8 and list(x) == [s.step for s in steps]  # one point per logged step
    assert np.allclose(y, [s.loss for s in steps])
    assert len(panel.lr_curve.getData()[0]) == 8
    assert len(panel.val_curve.getData()[0]) >= 1
    run = window.store.get_run(final.run_id)
    assert run["status"] == "finished"
    assert Path(final.best_checkpoint).is_file()
    assert window.store.checkpoints(final.run_id)
    assert "finished" in window.status.job_label.text()
    assert not window.runner.is_running()


def test_cancel_mid_run_records_cancelled_and_leaves_no_thread(window, qtbot):
    if not Path("/proc/self/task").exists():
        pytest.skip("thread count read from /proc")
    before = _os_threads()
    steps = start_training(window, max_steps=5000)
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=JOB_TIMEOUT_MS)
    assert window.actions_["cancel"].isEnabled()
    with qtbot.waitSignal(window.runner.finished, timeout=JOB_TIMEOUT_MS) as blocker:
        window.actions_["cancel"].trigger()
    final = blocker.args[0]
    assert final.status == "cancelled"
    assert window.store.get_run(final.run_id)["status"] == "cancelled"
    assert not window.runner.is_running()
    assert not window.actions_["cancel"].isEnabled()
    qtbot.waitUntil(lambda: _os_threads() <= before, timeout=5000)
    assert window.training_panel.banner.isVisible()


def test_closing_mid_run_asks_then_cancels_and_closes(window, qtbot, monkeypatch):
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args, **kwargs: asked.append(args) or QMessageBox.StandardButton.Yes)
    steps = start_training(window, max_steps=5000)
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=JOB_TIMEOUT_MS)
    with qtbot.waitSignal(window.runner.finished, timeout=JOB_TIMEOUT_MS) as blocker:
        window.close()
    assert asked
    assert window.store.get_run(blocker.args[0].run_id)["status"] == "cancelled"
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)


def test_malformed_file_shows_the_error_and_is_not_added(window, qtbot, tmp_path, settings):
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,9,10.5,100\n"
                   "2020-01-03,10,11,9,not-a-price,100\n", encoding="utf-8")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(bad))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    panel = window.data_panel
    with qtbot.waitSignal(panel.import_failed, timeout=5000) as blocker:
        panel.dropEvent(drop)  # drag-and-drop goes through the same import as the menu
    assert "bad.csv" in blocker.args[0]
    row = panel.issues.topLevelItem(0)
    assert row.text(0) == "Error" and row.text(1) == "3" and row.text(4)
    assert "failed" in panel.issues_title.text()
    assert str(bad.resolve()) not in [s for _, s in panel.sources()]
    assert not settings.value(IMPORTED_KEY)
    assert window.isVisible() and len(panel.chart.frame) == 8455  # the chart still shows the last good data


def test_event_loop_stays_responsive_while_training(window, qtbot):
    # long enough for a p95 over a few hundred ticks (30 steps gave 20 ticks on a warm CPU: no percentile)
    steps = start_training(window, max_steps=150, epochs=10)
    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()

    def tick():
        gaps.append(clock.restart())

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(10)
    timer.timeout.connect(tick)
    timer.start()
    with qtbot.waitSignal(window.runner.finished, timeout=JOB_TIMEOUT_MS) as blocker:
        pass
    timer.stop()
    assert blocker.args[0].status == "finished"
    assert len(steps) == 150 and len(gaps) > 50
    assert float(np.percentile(gaps, 95)) < 50, f"p95 gap {np.percentile(gaps, 95):.0f} ms"


def test_wizard_pages_refuse_invalid_values_where_they_are_entered(window, qtbot):
    wizard = window.open_train_wizard()
    data = wizard.data_page
    data.set_checked([])
    assert not data.isComplete()  # no dataset: Next stays disabled
    data.set_checked(["goog"])
    data.end.setDate(data.start.date())
    wizard.next()
    assert wizard.currentPage() is data and "start before" in data.error.text()
    data.end.setDate(data.end.maximumDate())
    wizard.next()
    wizard.stage_page.buttons["strategy"].setChecked(True)
    assert not wizard.stage_page.isComplete()  # no finished price run in a fresh history
    wizard.stage_page.buttons["price"].setChecked(True)
    wizard.next()
    wizard.next()
    compute = wizard.compute_page
    compute.precision.setCurrentText("fp16")
    compute.device.setCurrentText("cpu")
    wizard.next()
    assert wizard.currentPage() is compute and "fp16" in compute.error.text()
    wizard.reject()


def test_split_preview_shows_the_windows_training_will_validate_and_test_on(window):
    wizard = window.open_train_wizard()
    data = wizard.data_page
    data.set_checked([SMALL_DATASET])
    data.start.setDate(data.start.date().fromString(SHORT_PERIOD[0], "yyyy-MM-dd"))
    data.end.setDate(data.end.date().fromString(SHORT_PERIOD[1], "yyyy-MM-dd"))
    data.val_fraction.setValue(0.2)
    data.test_fraction.setValue(0.1)
    _, split = price_split([window.data_panel.bars(SMALL_DATASET)], wizard.request().data)
    for region, ends in ((data.val_region, split.val), (data.test_region, split.test)):
        assert region.isVisible() and region.getRegion() == (ends[0, 1], ends[-1, 1])
    data.end.setDate(data.start.date().addDays(60))  # too short to split: nothing to show
    assert not data.val_region.isVisible() and not data.test_region.isVisible()
    wizard.reject()


def test_wizard_remembers_the_last_choices(window, qtbot):
    start_wizard(fill_train_wizard(window, max_steps=3))
    with qtbot.waitSignal(window.runner.finished, timeout=JOB_TIMEOUT_MS):
        pass
    again = window.open_train_wizard()
    assert again.model_page.d_model.value() == 32
    assert again.compute_page.max_steps.value() == 3
    assert again.data_page.checked() == [window.data_panel.current_source()]  # the data panel's dataset wins
    again.reject()


def test_watchdog_explains_a_diverging_run(window, qtbot):
    from engine.events import Finished, RunStarted, StepEvent

    runner, panel = window.runner, window.training_panel
    runner.started.emit(RunStarted(run_id="r1", kind="price", total_steps=10))
    runner.stepped.emit(StepEvent(step=1, epoch=0, loss=float("nan"), grad_norm=1e9, lr=1e-3, samples_per_s=1))
    assert panel.banner.isVisible() and "Non-finite" in panel.banner.text()
    runner.finished.emit(Finished(run_id="r1", status="failed", error="NonFiniteError: non-finite loss at step 1"))
    assert "non-finite loss" in panel.banner.text()
    assert panel.stop_lines and len(panel.train_curve.getData()[0]) == 1


def test_wizard_head_selector_reaches_the_request_and_the_point_loss_only_applies_to_the_point_head(window, qtbot,
                                                                                                   tmp_path):
    wizard = fill_train_wizard(window, max_steps=3)
    assert wizard.request().price_model.head == "quantile"  # the default for new runs
    wizard.back()
    wizard.back()
    model = wizard.model_page
    assert not model.loss.isEnabled()
    model.head.setCurrentText("point")
    assert model.loss.isEnabled()
    model.head.setCurrentText("student_t")
    assert not model.loss.isEnabled()
    wizard.resize(1000, 640)
    wizard.grab().save(str(screenshot_path("train_wizard_head.png", tmp_path)))
    wizard.next()
    wizard.next()
    assert wizard.request().price_model.head == "student_t"
    assert "student-t output" in wizard.review_page.summary.text()
    wizard.reject()
