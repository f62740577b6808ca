"""The application shell: main window, data chart, menus and shortcuts, layout, theme, error routing."""

from __future__ import annotations

import threading

import numpy as np
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QKeySequence

from engine.data.samples import list_samples
from engine.store import RunStore
from workstation.app import ExceptionRouter, log_path
from workstation.charts import CandleItem
from workstation.main_window import MainWindow


def test_main_window_lists_bundled_data_and_draws_the_chart(window):
    sources = [source for _, source in window.data_panel.sources()]
    assert sources[:5] == [s.name for s in list_samples()]
    chart = window.data_panel.chart
    assert window.data_panel.current_source() == "sse"
    assert len(chart.frame) == 8455
    assert len(chart.candles._pictures) == -(-8455 // CandleItem.CHUNK)  # drawn once, in chunks
    assert "2025-08-05" in chart.readout.text
    first, last = chart.visible_range()
    assert last > 8400 and last - first < 400  # opens on the latest year, not a squashed history


def test_every_command_is_an_action_with_shortcut_and_status_tip(window):
    expected = {"import": QKeySequence.StandardKey.Open, "export_signals": "Ctrl+E",
                "quit": QKeySequence.StandardKey.Quit, "train": QKeySequence.StandardKey.New,
                "backtest": "Ctrl+B", "cancel": "Esc", "reset_layout": "Ctrl+Shift+R"}
    for key, shortcut in expected.items():
        action = window.actions_[key]
        assert action.shortcut() == QKeySequence(shortcut), key
        assert action.statusTip(), key
    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus == ["File", "Data", "Run", "View", "Help"]
    panel_toggles = window.panels_menu.actions()
    assert {a.text() for a in panel_toggles} >= {"Data", "Training"}
    assert not window.actions_["cancel"].isEnabled()  # nothing to cancel yet
    assert not window.actions_["export_signals"].isEnabled()  # part 2 connects it


def test_keyboard_zooms_and_pans_the_chart_over_trading_days(window, qtbot):
    chart = window.data_panel.chart
    chart.setFocus()
    first, last = chart.visible_range()
    qtbot.keyClick(chart, Qt.Key.Key_Up)
    zoomed = chart.visible_range()
    assert zoomed[1] - zoomed[0] < (last - first) * 0.9
    qtbot.keyClick(chart, Qt.Key.Key_Left)
    assert chart.visible_range()[0] < zoomed[0]
    qtbot.keyClick(chart, Qt.Key.Key_Home)
    first, last = chart.visible_range()
    assert first <= 0 and last >= 8454
    # y follows the bars in view: the whole history spans the 1990s lows to the 2007 peak
    low, high = chart.price_plot.vb.viewRange()[1]
    assert low < 200 and high > 6000


def test_date_axis_labels_trading_days_without_gaps(window):
    chart = window.data_panel.chart
    axis = chart.volume_plot.getAxis("bottom")
    dates = chart.frame.index
    friday = int(np.flatnonzero(dates.day_of_week == 4)[-2])
    axis.tickValues(friday - 3, friday + 3, 1000)  # a week in view: day labels
    labels = axis.tickStrings([friday, friday + 1], 1, 1)
    assert labels == [dates[friday].strftime("%m-%d"), dates[friday + 1].strftime("%m-%d")]
    assert (dates[friday + 1] - dates[friday]).days >= 3  # one x step jumps the weekend
    ticks = axis.tickValues(0, len(dates) - 1, 1000)[0][1]
    assert 2 <= len(ticks) <= 13
    assert all(dates[int(t)].month == 1 for t in ticks)  # the whole history is labelled by years
    assert axis.tickStrings(ticks, 1, 1)[0] == str(dates[int(ticks[0])].year)


def test_theme_and_up_colour_are_switchable_and_remembered(window):
    window.set_up_down("green-up")
    window.set_theme("light")
    assert window.palette_.name == "light" and window.palette_.up == "#26a69a"
    assert QSettings().value("view/theme") == "light"
    assert QSettings().value("view/up_down") == "green-up"


def test_layout_is_saved_restored_and_resettable(window, qtbot, isolated_home):
    window.docks["trainingDock"].hide()
    window.close()
    again = MainWindow(RunStore(isolated_home / "runs.db"))
    qtbot.addWidget(again)
    again.show()
    assert not again.docks["trainingDock"].isVisible()
    again.actions_["reset_layout"].trigger()
    assert not again.docks["trainingDock"].isHidden()


def test_exceptions_from_any_thread_reach_the_dialog_signal_and_log(qtbot, monkeypatch, settings):
    monkeypatch.setattr("sys.excepthook", None)
    monkeypatch.setattr("threading.excepthook", None)
    router = ExceptionRouter()
    router._show = lambda *args: None  # no dialog in tests; the signal is what matters
    router.install()

    def worker():
        raise RuntimeError("boom in a worker")

    with qtbot.waitSignal(router.raised, timeout=5000) as blocker:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert "boom in a worker" in blocker.args[0]
    assert "Traceback" in blocker.args[1]
    assert log_path().parent.exists()
