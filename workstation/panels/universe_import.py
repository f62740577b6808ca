"""The import dialog of a universe: where it is (folder, TDX vipdoc root, wide close table) and its filters."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QDate, QSettings
from PySide6.QtWidgets import (
    QCheckBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from engine.config import HORIZON, WINDOW
from engine.data.universe import UniverseFilters, member_names, universe_kind

FOLDER_KEY = "folders/universe"
KIND_LABELS = {"vipdoc": "TDX vipdoc folder (sh/sz/bj lday .day files)", "folder": "a folder of daily-bar files",
               "wide": "a wide close table (a date column, one column per instrument)"}


class UniverseImportDialog(QDialog):
    """Choose the universe and what to keep of it; the import itself runs in the background afterwards."""

    def __init__(self, path: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import universe")
        self.path = QLineEdit(path)
        self.path.setPlaceholderText("a folder, a TDX vipdoc root or a wide close table")
        self.path.textChanged.connect(self._describe)
        folder, table = QPushButton("Folder…"), QPushButton("Table…")
        folder.clicked.connect(self._choose_folder)
        table.clicked.connect(self._choose_table)
        self.kind = QLabel()
        self.kind.setProperty("role", "muted")
        self.min_rows = QSpinBox()
        self.min_rows.setRange(0, 100_000)
        self.min_rows.setValue(WINDOW + HORIZON + 1)
        self.min_rows.setSuffix(" bars")
        self.min_rows.setToolTip("Instruments with fewer bars in the date range are left out (one training "
                                 f"window needs {WINDOW + HORIZON + 1})")
        self.use_start, self.start = QCheckBox("from"), _date_edit(QDate(2000, 1, 1))
        self.use_end, self.end = QCheckBox("to"), _date_edit(QDate.currentDate())
        for box, edit in ((self.use_start, self.start), (self.use_end, self.end)):
            edit.setEnabled(False)
            box.toggled.connect(edit.setEnabled)
        self.prefixes = QLineEdit()
        self.prefixes.setPlaceholderText("all codes (e.g. sh60, sz00, sz30)")
        self.prefixes.setToolTip("Keep only codes starting with one of these, separated by commas")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Import")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        where = QHBoxLayout()
        where.addWidget(self.path, 1)
        where.addWidget(folder)
        where.addWidget(table)
        dates = QHBoxLayout()
        for w in (self.use_start, self.start, self.use_end, self.end):
            dates.addWidget(w)
        dates.addStretch(1)
        form = QFormLayout(self)
        form.addRow("Universe", where)
        form.addRow("", self.kind)
        form.addRow("Min history", self.min_rows)
        form.addRow("Date range", dates)
        form.addRow("Code prefix", self.prefixes)
        form.addRow(buttons)
        self._describe(path)

    def source(self) -> str:
        return self.path.text().strip()

    def filters(self) -> UniverseFilters:
        prefixes = tuple(p.strip() for p in self.prefixes.text().replace(";", ",").split(",") if p.strip())
        return UniverseFilters(
            min_rows=self.min_rows.value(), prefixes=prefixes,
            start=self.start.date().toString("yyyy-MM-dd") if self.use_start.isChecked() else None,
            end=self.end.date().toString("yyyy-MM-dd") if self.use_end.isChecked() else None)

    def _describe(self, text: str) -> None:
        kind = universe_kind(text.strip()) if text.strip() else None
        self.ok.setEnabled(kind is not None)
        self.kind.setText(f"{KIND_LABELS[kind]}: {len(member_names(text.strip())):,} instruments" if kind
                          else "not a universe yet" if text.strip() else "")

    def _start_folder(self) -> str:
        return QSettings().value(FOLDER_KEY, str(Path.home()))

    def _remember(self, path: str) -> None:
        if path:
            QSettings().setValue(FOLDER_KEY, str(Path(path).parent))
            self.path.setText(path)

    def _choose_folder(self) -> None:
        self._remember(QFileDialog.getExistingDirectory(self, "Universe folder or vipdoc root", self._start_folder()))

    def _choose_table(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Wide close table", self._start_folder(),
                                              "Tables (*.csv *.txt *.tsv);;All files (*)")
        self._remember(path)


def _date_edit(day: QDate) -> QDateEdit:
    edit = QDateEdit(day)
    edit.setCalendarPopup(True)
    edit.setDisplayFormat("yyyy-MM-dd")
    return edit
