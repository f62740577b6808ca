"""GUI test fixtures: isolated QSettings and the real main window on a temp run history."""

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
def window(qtbot, settings, isolated_home):
    """The real main window on a temp run history; any job is cancelled and joined afterwards."""
    theme.apply(QApplication.instance())
    win = MainWindow(RunStore(isolated_home / "runs.db"))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    if win.runner.is_running():
        win.runner.cancel()
        with qtbot.waitSignal(win.runner.finished, timeout=60_000):
            pass
