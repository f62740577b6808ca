"""At start-up, the runs a crash or a power cut interrupted, with an offer to resume them.

Non-modal, so the window stays usable; runs the user chose "Not now" for are remembered in
QSettings and not offered again (the History panel still resumes them).
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from engine.store import RunStore

DISMISSED_KEY = "resume/dismissed"


def runs_to_offer(store: RunStore) -> list[dict]:
    """Interrupted price and strategy runs with a checkpoint to resume from, not yet dismissed."""
    dismissed = set(QSettings().value(DISMISSED_KEY, [], list) or [])
    return [r for r in store.list_runs(status="interrupted")
            if r["run_id"] not in dismissed and store.checkpoint(r["run_id"], best=False)]


class ResumePrompt(QDialog):
    """Lists interrupted runs; Resume starts the selected one, Not now stops offering them."""

    resume_requested = Signal(str)  # run id

    def __init__(self, runs: list[dict], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Interrupted runs")
        self.setObjectName("resumePrompt")
        self.runs = runs
        self.list = QListWidget()
        for run in runs:
            item = QListWidgetItem(f"{run['run_id']}  ·  {run['kind']} on {run['dataset']}  ·  "
                                   f"step {run['step'] or 0}  ·  started {run['started'][:16]}")
            item.setData(Qt.ItemDataRole.UserRole, run["run_id"])
            self.list.addItem(item)
        self.list.setCurrentRow(0)
        buttons = QDialogButtonBox()
        self.resume_button = buttons.addButton("Resume", QDialogButtonBox.ButtonRole.AcceptRole)
        self.later_button = buttons.addButton("Not now", QDialogButtonBox.ButtonRole.RejectRole)
        buttons.accepted.connect(self._resume)
        buttons.rejected.connect(self._dismiss)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"{len(runs)} training run(s) stopped without finishing (the app or the "
                                "machine went down). Each can continue from its last checkpoint."))
        layout.addWidget(self.list)
        layout.addWidget(buttons)

    def _resume(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.resume_requested.emit(item.data(Qt.ItemDataRole.UserRole))
        self.accept()

    def _dismiss(self) -> None:
        settings = QSettings()
        dismissed = set(settings.value(DISMISSED_KEY, [], list) or [])
        settings.setValue(DISMISSED_KEY, sorted(dismissed | {r["run_id"] for r in self.runs}))
        self.reject()
