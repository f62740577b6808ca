"""Start-up: the QApplication, settings names, theme, the exception hook, the main window."""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, QSettings, Qt, Signal, Slot
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from engine.store import default_db_path
from workstation import theme

ORGANIZATION = "QuantWorkstation"
APPLICATION = "Quant Workstation"
LOG_NAME = "workstation.log"

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


def log_path() -> Path:
    """The log file lives next to the run history (the user's data folder)."""
    return default_db_path().parent / LOG_NAME


def configure_logging() -> None:
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler, logging.StreamHandler()])


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication with the names QSettings uses, themed from the saved choice."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    settings = QSettings()
    theme.apply(app, str(settings.value("view/theme", "dark")), str(settings.value("view/up_down", "red-up")))
    return app


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python main.py` and the `quant-workstation` script."""
    configure_logging()
    app = create_application(argv)
    from workstation.main_window import MainWindow  # after the app exists: widgets need it

    window = MainWindow()
    router = ExceptionRouter(window)
    router.install()
    window.show()
    app.aboutToQuit.connect(lambda: window.runner.wait())
    return app.exec()
