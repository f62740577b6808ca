"""Start-up: the QApplication, settings names, theme, the exception hook, the main window."""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QWidget

from engine.store import RunStore, RunStoreError, default_db_path
from workstation import theme

ORGANIZATION = "QuantWorkstation"
APPLICATION = "Quant Workstation"
LOG_NAME = "workstation.log"
HISTORY_KEY = "history/folder"  # a folder the user chose when the default one could not be used

log = logging.getLogger("workstation")


class ExceptionRouter(QObject):
    """Carries an exception from any thread to the GUI thread, where a dialog shows it."""

    raised = Signal(str, str)  # one-line summary, full traceback

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__()
        self._parent = parent
        self.raised.connect(self._show)

    def report(self, kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        """Log and forward; safe to call from any thread (a queued signal, no widget touched)."""
        details = "".join(traceback.format_exception(kind, value, tb))
        log.error("unhandled exception\n%s", details)
        self.raised.emit(f"{kind.__name__}: {value}", details)

    def install(self) -> None:
        sys.excepthook = self.report
        threading.excepthook = lambda args: self.report(args.exc_type, args.exc_value, args.exc_traceback)

    @Slot(str, str)
    def _show(self, summary: str, details: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Critical, "Unexpected error", summary, parent=self._parent)
        box.setInformativeText(f"The workstation keeps running. Details are in {log_path()}.")
        box.setDetailedText(details)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()


def history_path() -> Path:
    """$QUANT_WORKSTATION_HOME when set, else the folder chosen after a failed start, else the default."""
    chosen = QSettings().value(HISTORY_KEY)
    if chosen and "QUANT_WORKSTATION_HOME" not in os.environ:
        return Path(str(chosen)) / default_db_path().name
    return default_db_path()


def log_path() -> Path:
    """The log file lives next to the run history (the user's data folder)."""
    return default_db_path().parent / LOG_NAME


def configure_logging() -> None:
    """Log to the data folder and stderr; an unwritable folder leaves stderr only (start-up
    then explains the folder problem in a dialog, instead of dying here with a traceback)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    try:
        log_path().parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path(), encoding="utf-8"))
    except OSError as error:
        print(f"workstation: not logging to a file: {error}", file=sys.stderr)
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=handlers)


def ask_history_folder(error: str) -> Path | None:
    """Explain why the run history cannot be used; the folder the user picks instead, or None to quit."""
    box = QMessageBox(QMessageBox.Icon.Critical, "Run history unavailable",
                      "The run history (every training run and backtest) cannot be opened or written.")
    box.setInformativeText(f"{error}\n\nChoose another folder for the history, or quit.")
    choose = box.addButton("Choose another folder…", QMessageBox.ButtonRole.AcceptRole)
    box.addButton("Quit", QMessageBox.ButtonRole.RejectRole)
    box.exec()
    if box.clickedButton() is not choose:
        return None
    folder = QFileDialog.getExistingDirectory(None, "Folder for the run history", str(Path.home()))
    return Path(folder) if folder else None


def open_history(ask: Callable[[str], Path | None] | None = None) -> RunStore | None:
    """The run history, asking (ask_history_folder) for another folder for as long as the one tried
    cannot be used; None when the user quits. A chosen folder is remembered for the next start."""
    ask = ask or ask_history_folder
    path = history_path()
    while True:
        try:
            store = RunStore(path)
        except RunStoreError as error:
            log.error("run history unavailable: %s", error)
            folder = ask(str(error))
            if folder is None:
                return None
            path = folder / default_db_path().name
            continue
        if path != default_db_path():
            QSettings().setValue(HISTORY_KEY, str(path.parent))
        return store


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication with the names QSettings uses, themed from the saved choice."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    settings = QSettings()
    theme.apply(app, str(settings.value("view/theme", "dark")), str(settings.value("view/up_down", "market")))
    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python main.py` and the `quant-workstation` script."""
    configure_logging()
    app = create_application(argv)
    from workstation.main_window import MainWindow  # after the app exists: widgets need it

    store = open_history()
    if store is None:
        return 1
    window = MainWindow(store)
    router = ExceptionRouter(window)
    router.install()
    window.show()
    app.aboutToQuit.connect(lambda: window.runner.wait())
    return app.exec()
