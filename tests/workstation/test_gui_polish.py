"""Review fixes of the workstation: bounded training curves, an unusable run history at start-up
and mid-job, the linked crosshair and lazy candles, shared wizard fields, deleting one backtest,
and multi-process training launched with torchrun and followed through the run history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QMessageBox,
    QRadioButton,
    QSpinBox,
    QWidget,
)

from engine.backtest.run import run_backtest
from engine.cli.core import build_parser
from engine.config import BacktestConfig
from engine.data import load_bars
from engine.events import Finished, Progress, RunStarted, StepEvent
from engine.jobs.backtest import backtest_frame_json
from engine.store import RunStore, RunStoreError
from tests.workstation.helpers import fill_train_wizard, start_training
from workstation import app as app_module
from workstation.jobs import HISTORY_ADVICE
from workstation.panels.backtest_panels import BacktestView, PositionsPanel
from workstation.panels.training_panel import MAX_POINTS, DecimatedSeries
from workstation.wizards.backtest_wizard import BacktestWizard
from workstation.wizards.train_wizard import TrainWizard

JOB_TIMEOUT_MS = 120_000


# --- 1. bounded training curves -------------------------------------------------------------------

def test_decimated_series_is_bounded_keeps_spikes_recent_steps_and_even_resolution():
    series = DecimatedSeries(["loss"], cap=400)
    values = np.random.default_rng(0).random(60_000)
    values[123], values[31_000] = 50.0, -7.0  # one spike early, one dip mid-run
    for step, value in enumerate(values):
        series.append(step, {"loss": value})
    x, y = series.column("loss")
    assert len(x) <= 400 and np.all(np.diff(x) > 0) and x[0] == 0
    assert list(x[-200:]) == list(range(60_000 - 200, 60_000))  # the newest half exactly as logged
    np.testing.assert_array_equal(y[-200:], values[-200:])
    assert y.max() == 50.0 and y.min() == -7.0  # spikes survive every merge
    gaps = np.diff(x[:series.coarse])
    assert gaps.max() <= 2 * series.bin  # older steps evenly covered, not squeezed into the first point
    assert series.weights[:series.coarse // 2].sum() + series.n - series.coarse == len(values)


def test_training_panel_keeps_every_step_of_a_short_run_and_bounds_a_long_one(window):
    runner, panel = window.runner, window.training_panel
    runner.started.emit(RunStarted(run_id="long", kind="price", total_steps=0))
    steps = 3 * MAX_POINTS
    for step in range(1, steps + 1):
        loss = 100.0 if step == 50 else 1.0 / step
        runner.stepped.emit(StepEvent(step=step, epoch=0, loss=loss, grad_norm=1.0, lr=1e-3, samples_per_s=1.0,
                                      module_grad_norms={"head": 0.5}))
        if step == 300:  # below the cap: one point per logged step
            panel.redraw()
            assert list(panel.train_curve.getData()[0]) == list(range(1, 301))
    buffer_bytes = panel.data.train.y.nbytes
    panel.redraw()
    for curve in (panel.train_curve, panel.smooth_curve, panel.lr_curve, panel.grad_curves["total"]):
        assert len(curve.getData()[0]) <= MAX_POINTS
    x, y = panel.train_curve.getData()
    assert x[-1] == steps and y.max() == 100.0  # the newest step and the early spike are both drawn
    assert panel.data.train.y.nbytes == buffer_bytes  # buffers are preallocated: no growth per step


# --- 2. an unusable run history -------------------------------------------------------------------

def test_startup_with_an_unusable_history_explains_it_and_opens_the_folder_chosen(settings, tmp_path,
                                                                                  monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the history folder should be")
    monkeypatch.setenv("QUANT_WORKSTATION_HOME", str(blocker / "home"))
    asked: list[str] = []
    good = tmp_path / "elsewhere"
    good.mkdir()
    store = app_module.open_history(lambda error: asked.append(error) or good)
    assert len(asked) == 1 and str(blocker / "home" / "runs.db") in asked[0]  # names the file it tried
    assert store is not None and store.path == good / "runs.db"
    assert Path(settings.value(app_module.HISTORY_KEY)) == good


def test_startup_quits_cleanly_when_the_user_does_not_pick_a_folder(settings, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("QUANT_WORKSTATION_HOME", str(blocker / "home"))
    asked: list[str] = []
    monkeypatch.setattr(app_module, "ask_history_folder", lambda error: asked.append(error))
    shown_before = {id(w) for w in QApplication.topLevelWidgets() if w.isVisible()}
    assert app_module.main([]) == 1  # no traceback, no window: the dialog explained it
    assert asked and "not-a-folder" in asked[0]
    assert not [w for w in QApplication.topLevelWidgets() if w.isVisible() and id(w) not in shown_before]


def _visible_boxes() -> list[QMessageBox]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]


def _full_disk_job(store: RunStore):
    def job(cancel):
        yield Progress(0, 2, "recording")
        raise RunStoreError(store.explain(sqlite3.OperationalError("database or disk is full")))
    return job


def _finished_job(cancel):
    yield Progress(1, 1, "done")
    return Finished(run_id="", status="finished")


@pytest.mark.parametrize("dock", ["equityDock", "trainingDock"])
def test_a_history_error_in_a_job_reaches_the_user_and_the_window_stays_usable(window, qtbot, dock):
    with qtbot.waitSignal(window.runner.finished, timeout=10_000) as blocker:
        window._start_job(_full_disk_job(window.store), "Disk test", dock)
    final = blocker.args[0]
    assert final.status == "failed" and final.error.startswith("run history ")  # the message, no traceback
    assert "Traceback" not in final.error and "disk is full" in final.error
    boxes = _visible_boxes()
    assert len(boxes) == 1 and "disk is full" in boxes[0].text() and boxes[0].informativeText() == HISTORY_ADVICE
    boxes[0].close()
    assert not window.runner.is_running() and window.actions_["train"].isEnabled()
    with qtbot.waitSignal(window.runner.finished, timeout=10_000) as blocker:  # the next job runs as usual
        window._start_job(_finished_job, "Next", dock)
    assert blocker.args[0].status == "finished"


# --- 3. linked crosshair, lazy candles -------------------------------------------------------------

def _view(name: str = "goog") -> BacktestView:
    bars = load_bars(name)
    close = bars.frame["close"]
    steps = np.random.default_rng(0).integers(-1, 2, len(close))
    positions = pd.Series(np.clip(np.cumsum(steps), 0, 10), index=close.index)
    result = run_backtest(close, positions, BacktestConfig())
    record = {"config": {"instrument": bars.instrument, "start": "", "end": "", "kind": "strategy"},
              "run_id": "view", "dataset": name, "baselines": result.baselines,
              "metrics": {**result.metrics, "per_regime": result.per_regime}}
    return BacktestView("view", record, result.frame, bars.frame.reindex(result.frame.index))


def test_hovering_the_positions_plot_moves_the_crosshair_on_every_linked_plot(window, qtbot):
    panel: PositionsPanel = window.positions_panel
    window.docks["positionsDock"].raise_()
    view = _view()
    panel.show_backtest(view)
    index = len(view.frame) // 3
    plot, viewport, crosshair = panel.position_plot, panel.chart.viewport(), panel.chart.crosshair

    def hover_reaches_every_plot() -> bool:
        """Hover over day `index` (offscreen: no real cursor); re-sent while the dock's layout settles."""
        local = QPointF(panel.chart.mapFromScene(plot.vb.mapViewToScene(QPointF(index, 5))))
        QApplication.sendEvent(viewport, QMouseEvent(QEvent.Type.MouseMove, local, viewport.mapToGlobal(local),
                                                     Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
                                                     Qt.KeyboardModifier.NoModifier))
        return all(abs(v.value() - index) <= 1 for v in crosshair._vlines)

    qtbot.waitUntil(hover_reaches_every_plot, timeout=5000)
    assert len(crosshair._vlines) == 3  # price, volume and positions
    assert [h.isVisible() for h in crosshair._hlines] == [False, False, True]
    shown = round(crosshair._vlines[0].value())
    assert f"{view.frame.index[shown]:%Y-%m-%d}" in panel.readout.text()


def test_candles_are_recorded_the_first_time_their_chunk_is_painted(window):
    chart = window.data_panel.chart
    chart.grab()
    candles = chart.candles
    assert len(candles._pictures) == -(-len(chart.frame) // candles.CHUNK)
    assert 1 <= candles.recorded() <= 3  # the latest year in view: not the 34 chunks of the history
    chart.show_range(-0.5, len(chart.frame) - 0.5)
    chart.grab()
    assert candles.recorded() == len(candles._pictures)


def test_a_long_readout_never_pushes_the_latest_bars_off_the_chart(window):
    """The read-out (title, OHLC, change, volume) is wider than a narrow chart: it is clipped, and the
    price plot still ends inside the widget, so the latest bar is on screen."""
    chart = window.data_panel.chart
    chart.resize(420, chart.height())
    chart.grab()
    assert chart.readout.item.boundingRect().width() > chart.width()  # the case at hand
    right = chart.price_plot.vb.sceneBoundingRect().right()
    assert right <= chart.viewport().width()
    assert chart.price_plot.vb.mapViewToScene(QPointF(len(chart.frame) - 1, 0)).x() < right


# --- 4. shared wizard fields -----------------------------------------------------------------------

def _change_every_field(fields: dict[str, QWidget]) -> dict[str, object]:
    """Move every remembered input off its current value; returns what each then shows."""
    radios = [w for w in fields.values() if isinstance(w, QRadioButton)]
    if radios:
        next(r for r in reversed(radios) if not r.isChecked()).setChecked(True)
    for widget in fields.values():  # in order: a preset combo first, the fields it fills after it
        if isinstance(widget, QComboBox):
            widget.setCurrentIndex((widget.currentIndex() + 1) % widget.count())
        elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
            at_min = widget.value() == widget.minimum()
            widget.setValue(widget.maximum() if at_min else widget.minimum())
        elif isinstance(widget, QCheckBox):
            widget.setChecked(not widget.isChecked())
    return {key: _shown(w) for key, w in fields.items()}


def _shown(widget: QWidget) -> object:
    if isinstance(widget, QComboBox):
        return widget.currentText()
    return widget.isChecked() if isinstance(widget, (QCheckBox, QRadioButton)) else widget.value()


@pytest.mark.parametrize("open_wizard", [
    lambda win: TrainWizard(win.data_panel.sources(), win.data_panel.bars, win.store, win.palette_),
    lambda win: BacktestWizard(win.store, win.data_panel.sources(), win.data_panel.bars),
], ids=["train", "backtest"])
def test_every_remembered_wizard_choice_comes_back_in_the_next_wizard(window, open_wizard):
    first = open_wizard(window)
    chosen = _change_every_field(first._fields())
    first._remember()
    first.reject()
    again = open_wizard(window)
    assert {key: _shown(w) for key, w in again._fields().items()} == chosen
    again.reject()


# --- 5. deleting one backtest ----------------------------------------------------------------------

def _backtests(store: RunStore, csv: Path) -> tuple[str, str, str]:
    run = store.create_run("price", dataset="goog", fingerprint="f", config={}, seed=0, device="cpu")
    store.finish_run(run, "finished")
    close = load_bars("goog").frame["close"].iloc[-300:]
    frame = backtest_frame_json(run_backtest(close, pd.Series(5.0, index=close.index), BacktestConfig()))
    doomed, kept = (store.add_backtest(run, dataset="goog", config={"start": "a", "end": "b"},
                                       metrics={"total_return": 0.1}, baselines={}, frame_json=frame)
                    for _ in range(2))
    csv.write_text("date,position\n2020-01-02,5\n")
    store.add_export(doomed, csv, 1, "0" * 64)
    return run, doomed, kept


def test_delete_backtest_removes_it_and_its_export_records_but_not_the_csv(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    run, doomed, kept = _backtests(store, tmp_path / "signals.csv")
    store.delete_backtest(doomed)
    assert store.get_backtest(doomed) is None and store.list_exports(doomed) == []
    assert (tmp_path / "signals.csv").is_file()  # the user's file stays
    assert store.get_backtest(kept) is not None and store.get_run(run)["status"] == "finished"
    with pytest.raises(KeyError):
        store.delete_backtest(doomed)


def test_history_panel_deletes_a_backtest_after_confirmation(window, monkeypatch, tmp_path):
    run, doomed, kept = _backtests(window.store, tmp_path / "signals.csv")
    history = window.history_panel
    history.refresh()
    history.select([doomed])
    assert history.buttons["delete"].isEnabled() and history.buttons["delete"].text() == "Delete backtest…"
    answers = iter([QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes])
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or next(answers))
    assert not history.delete_current()  # "No" keeps it
    assert window.store.get_backtest(doomed) is not None
    assert history.delete_current()
    assert doomed in asked[-1] and "kept" in asked[-1]
    assert ("backtest", doomed) not in history.rows() and ("backtest", kept) in history.rows()
    assert ("run", run) in history.rows()


# --- 6. multi-process training with torchrun ---------------------------------------------------------

def test_torchrun_command_carries_every_choice_to_the_cli(window):
    wizard = fill_train_wizard(window, max_steps=6)
    wizard.compute_page.processes.setValue(2)
    request = wizard.request()
    wizard.reject()
    from workstation.torchrun import torchrun_command
    command = torchrun_command(request.datasets, request.price_model, request.data, request.train,
                               window.store.path, request.processes)
    assert command[1:3] == ["-m", "engine.training.launch"] and "--nproc_per_node=2" in command
    args = build_parser().parse_args(command[command.index("engine") + 1:])
    assert args.db == window.store.path and args.json and args.data == ["goog"]
    assert (args.start, args.end, args.max_steps, args.batch_size) == (request.data.start, request.data.end, 6, 16)
    assert (args.device, args.precision, args.lr) == ("cpu", "fp32", request.train.lr)
    assert {"d_model=32", "n_layers=1"} <= set(args.overrides)


@pytest.mark.slow
def test_two_process_torchrun_run_is_followed_from_the_history_to_the_end(window, qtbot):
    steps = start_training(window, max_steps=6, processes=2, epochs=1)
    with qtbot.waitSignal(window.runner.finished, timeout=JOB_TIMEOUT_MS) as blocker:
        pass
    final = blocker.args[0]
    assert final.status == "finished", final.error
    runs = window.store.list_runs()
    assert [r["run_id"] for r in runs] == [final.run_id] and runs[0]["status"] == "finished"  # exactly one run
    panel = window.training_panel
    x, y = panel.train_curve.getData()
    assert list(x) == [s.step for s in steps] == list(range(1, 7))
    np.testing.assert_allclose(y, [v for _, v in window.store.metric_series(final.run_id, "train/loss")])
    assert len(panel.lr_curve.getData()[0]) == 6 and len(panel.grad_curves["total"].getData()[0]) == 6
    assert len(panel.val_curve.getData()[0]) >= 1
    assert final.run_id in panel.title.text() and "finished" in panel.title.text()
    assert Path(final.best_checkpoint).is_file()


@pytest.mark.slow
def test_cancelling_a_torchrun_run_records_it_cancelled_and_stops_every_process(window, qtbot):
    steps = start_training(window, max_steps=100_000, processes=2, epochs=1000)
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=JOB_TIMEOUT_MS)
    with qtbot.waitSignal(window.runner.finished, timeout=JOB_TIMEOUT_MS) as blocker:
        window.training_panel.cancel_button.click()
    final = blocker.args[0]
    assert final.status == "cancelled", final.error
    assert window.store.get_run(final.run_id)["status"] == "cancelled"
    assert len(window.store.list_runs()) == 1
    assert "cancelled" in window.training_panel.title.text()
    if Path("/proc").exists():
        assert _processes_using(window.store.path) == []  # no launcher or rank left behind


def _processes_using(db: Path) -> list[int]:
    """Processes whose command line names this run history (the launcher and its ranks)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if str(db) in (entry / "cmdline").read_bytes().decode("utf-8", "replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_multi_process_training_is_refused_for_the_strategy_stage(window):
    wizard = fill_train_wizard(window)
    wizard.back()  # review -> compute
    wizard.compute_page.processes.setValue(2)
    wizard.stage_page.buttons["both"].setChecked(True)
    wizard.next()
    assert wizard.currentPage() is wizard.compute_page and "price network only" in wizard.compute_page.error.text()
    wizard.reject()
