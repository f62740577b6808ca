"""GUI test fixtures: isolated QSettings and the real main window, on a temp run history or a given one."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from engine.store import RunStore
from workstation import theme
from workstation.app import APPLICATION, ORGANIZATION
from workstation.main_window import MainWindow


@pytest.fixture
def settings(tmp_path):
    """QSettings written under the test's temp folder, never the user's."""
    app = QApplication.instance() or QApplication([])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    return QSettings()


@pytest.fixture
def make_window(qtbot, settings):
    """Opens the real main window, shown, on a given run history (a module's trained one, say) at an
    optional size; afterwards each window's running job is cancelled and joined within join_ms, so no
    worker thread outlives its test."""
    opened: list[tuple[MainWindow, int]] = []

    def make(store: RunStore, size: tuple[int, int] | None = None, join_ms: int = 60_000) -> MainWindow:
        theme.apply(QApplication.instance())
        win = MainWindow(store)
        qtbot.addWidget(win)
        if size:
            win.resize(*size)
        win.show()
        qtbot.waitExposed(win)
        opened.append((win, join_ms))
        return win

    yield make
    for win, join_ms in opened:
        if win.runner.is_running():
            win.runner.cancel()
            with qtbot.waitSignal(win.runner.finished, timeout=join_ms):
                pass


@pytest.fixture
def window(make_window, isolated_home):
    """The real main window on a temp run history."""
    return make_window(RunStore(isolated_home / "runs.db"))
