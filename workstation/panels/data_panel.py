"""Datasets: the bundled samples and the user's imports, their import problems, and their chart."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from engine.data.io import MARKETS, BarTable, DataImportError, load_bars
from engine.data.samples import list_samples
from workstation.charts import PriceChart
from workstation.panels.layout import PANEL_MARGIN, split, stack
from workstation.theme import Palette

IMPORTED_KEY = "data/imported"
FOLDER_KEY = "folders/import"
LOG_KEY = "data/log_scale"
MARKETS_KEY = "data/markets"  # {source: market} the user chose; absent: inferred on import
MARKET_LABELS = {"cn": "cn: A-share, ±10 % daily limit", "us": "us: no daily limit",
                 "unknown": "unknown: no daily limit"}
FILE_FILTER = "Daily bars (*.csv *.txt *.xls *.xlsx *.tsv);;All files (*)"
SOURCE_ROLE = Qt.ItemDataRole.UserRole


class DataPanel(QWidget):
    """List on the left (datasets, details, problems), candle + volume chart on the right."""

    selection_changed = Signal(str)  # source: a sample name or a file path
    imported = Signal(str)
    import_failed = Signal(str)

    def __init__(self, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dataPanel")
        self.setAcceptDrops(True)
        self._cache: dict[str, BarTable] = {}
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Dataset", "Bars", "Span"])
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.header().setStretchLastSection(False)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            self.tree.header().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.bundled_group = self._group("Bundled")
        self.imported_group = self._group("Imported")
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Import daily bars (CSV, terminal .xls/.txt export, .xlsx); "
                                      "you can also drop a file here")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Forget the selected imported dataset (the file is not touched)")
        self.market = QComboBox()
        for market in MARKETS:
            self.market.addItem(MARKET_LABELS[market], market)
        self.market.setToolTip("Where the instrument trades: sets the daily limit the import checks and "
                               "whether the backtest wizard proposes A-share rules (remembered per dataset)")
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setProperty("role", "muted")
        self.issues_title = QLabel("Import problems")
        self.issues = QTreeWidget()
        self.issues.setHeaderLabels(["", "Row", "Date", "Column", "Message"])
        self.issues.setRootIsDecorated(False)
        self.issues.setAlternatingRowColors(True)
        for column in range(4):
            self.issues.header().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.chart = PriceChart(palette)
        self.log_scale = QCheckBox("Log scale")
        self.log_scale.setToolTip("Prices on a logarithmic axis: equal moves in percent look equal (remembered)")
        self.log_scale.setChecked(QSettings().value(LOG_KEY, False) in (True, "true"))
        self.chart.set_log_y(self.log_scale.isChecked())
        self.log_scale.toggled.connect(self._on_log_scale)
        self._layout()
        self.tree.currentItemChanged.connect(self._on_current)
        self.import_button.clicked.connect(self.choose_file)
        self.remove_button.clicked.connect(self.remove_selected)
        self.market.currentIndexChanged.connect(self._on_market)
        self._fill()

    def _layout(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Market"))
        buttons.addWidget(self.market)
        buttons.addWidget(self.log_scale)
        left = QWidget()
        stack(left, (self.tree, 3), buttons, self.details, self.issues_title, (self.issues, 2), margin=PANEL_MARGIN)
        self.splitter = split(left, self.chart, [400, 1000], grow=1)
        stack(self, self.splitter)

    def _group(self, title: str) -> QTreeWidgetItem:
        group = QTreeWidgetItem(self.tree, [title])
        group.setFlags(Qt.ItemFlag.ItemIsEnabled)
        group.setExpanded(True)
        font = group.font(0)
        font.setBold(True)
        group.setFont(0, font)
        return group

    def _fill(self) -> None:
        for sample in list_samples():
            self._add_item(self.bundled_group, sample.instrument, sample.name,
                           f"{sample.rows:,}", f"{sample.first[:4]}–{sample.last[:4]}")
        for path in self.imported_paths():
            self._add_item(self.imported_group, Path(path).name, path, "", "")
        self.tree.setCurrentItem(self.bundled_group.child(0))

    @staticmethod
    def _add_item(group: QTreeWidgetItem, label: str, source: str, bars: str, span: str) -> QTreeWidgetItem:
        item = QTreeWidgetItem(group, [label, bars, span])
        item.setData(0, SOURCE_ROLE, source)
        item.setToolTip(0, source)
        return item

    # --- what other panels and the wizard ask for -------------------------------------------

    def sources(self) -> list[tuple[str, str]]:
        """(label, source) of every dataset, bundled first."""
        return [(g.child(i).text(0), g.child(i).data(0, SOURCE_ROLE))
                for g in (self.bundled_group, self.imported_group) for i in range(g.childCount())]

    def current_source(self) -> str | None:
        item = self.tree.currentItem()
        return item.data(0, SOURCE_ROLE) if item else None

    def bars(self, source: str) -> BarTable:
        """The imported table for a source, read once per session (raises DataImportError)."""
        if source not in self._cache:
            self._cache[source] = load_bars(source, market=self.chosen_markets().get(source))
        return self._cache[source]

    @staticmethod
    def chosen_markets() -> dict[str, str]:
        """The markets the user set, by source (the rest are inferred)."""
        value = QSettings().value(MARKETS_KEY, {})
        return {k: v for k, v in dict(value or {}).items() if v in MARKETS}

    def _on_log_scale(self, on: bool) -> None:
        QSettings().setValue(LOG_KEY, on)
        self.chart.set_log_y(on)

    def _on_market(self, _index: int) -> None:
        """The user's word on the market: remembered, and the dataset re-read with it."""
        source = self.current_source()
        if not source:
            return
        QSettings().setValue(MARKETS_KEY, {**self.chosen_markets(), source: self.market.currentData()})
        self._cache.pop(source, None)
        self._on_current(self.tree.currentItem())

    def select(self, source: str) -> None:
        for group in (self.bundled_group, self.imported_group):
            for i in range(group.childCount()):
                if group.child(i).data(0, SOURCE_ROLE) == source:
                    self.tree.setCurrentItem(group.child(i))

    @staticmethod
    def imported_paths() -> list[str]:
        value = QSettings().value(IMPORTED_KEY, [])
        return [value] if isinstance(value, str) else list(value or [])

    # --- importing ------------------------------------------------------------------------

    def choose_file(self) -> None:
        folder = QSettings().value(FOLDER_KEY, str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Import daily bars", folder, FILE_FILTER)
        if path:
            QSettings().setValue(FOLDER_KEY, str(Path(path).parent))
            self.import_file(path)

    def import_file(self, path: str | Path) -> BarTable | None:
        """Validate and add a file; an error is listed (and blocks), warnings are listed (and inform)."""
        path = str(Path(path).resolve())
        self._cache.pop(path, None)
        try:
            table = self.bars(path)
        except (DataImportError, OSError) as error:
            self._show_error(error)
            self.import_failed.emit(str(error))
            return None
        if path not in self.imported_paths():
            QSettings().setValue(IMPORTED_KEY, [*self.imported_paths(), path])
            self._add_item(self.imported_group, Path(path).name, path, "", "")
        self.select(path)
        self.imported.emit(path)
        return table

    def remove_selected(self) -> None:
        item = self.tree.currentItem()
        if item is None or item.parent() is not self.imported_group:
            return
        source = item.data(0, SOURCE_ROLE)
        QSettings().setValue(IMPORTED_KEY, [p for p in self.imported_paths() if p != source])
        self._cache.pop(source, None)
        self.imported_group.removeChild(item)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.import_file(url.toLocalFile())
        event.acceptProposedAction()

    # --- showing ----------------------------------------------------------------------------

    def _on_current(self, item: QTreeWidgetItem | None, _previous=None) -> None:
        source = item.data(0, SOURCE_ROLE) if item else None
        self.remove_button.setEnabled(bool(item) and item.parent() is self.imported_group)
        if not source:
            return
        try:
            table = self.bars(source)
        except (DataImportError, OSError) as error:
            self._show_error(error)
            return
        item.setText(1, f"{len(table.frame):,}")
        item.setText(2, f"{table.frame.index[0]:%Y}–{table.frame.index[-1]:%Y}")
        self.chart.set_bars(table.frame, table.instrument, table.market)
        self.market.blockSignals(True)  # showing the market is not choosing it
        self.market.setCurrentIndex(self.market.findData(table.market))
        self.market.blockSignals(False)
        self._show_table(table)
        self.selection_changed.emit(source)

    def _show_table(self, table: BarTable) -> None:
        f = table.frame
        lines = [f"{table.instrument} · {len(f):,} bars · {f.index[0]:%Y-%m-%d} → {f.index[-1]:%Y-%m-%d}"
                 f" · market {table.market}{' · adjusted' if table.adjusted else ''}",
                 f"present: {', '.join(table.present) or '—'}"]
        if table.derived:
            lines.append(f"derived: {', '.join(table.derived)}")
        if table.missing:
            lines.append(f"missing (masked, never invented): {', '.join(table.missing)}")
        self.details.setText("\n".join(lines))
        self.issues.clear()
        for issue in table.warnings:
            self._issue_row("Warning", issue.row, issue.date, issue.column, issue.message)
        self.issues_title.setText(f"Import problems: {len(table.warnings)} warning(s)"
                                  if table.warnings else "Import problems: none")
        self._set_title_role("muted")

    def _show_error(self, error: Exception) -> None:
        self.issues.clear()
        if isinstance(error, DataImportError):
            for problem in error.problems:
                self._issue_row("Error", problem.row, problem.date, problem.column, problem.message)
            if error.unreported:
                self._issue_row("Error", None, None, None, f"… and {error.unreported} more")
            count = len(error.problems) + error.unreported
            self.issues_title.setText(f"Import failed: {Path(error.file).name} was not added"
                                      + (f" ({count} bad rows)" if count > 1 else ""))
        else:
            self._issue_row("Error", None, None, None, str(error))
            self.issues_title.setText("Import failed")
        self._set_title_role("error")

    def _set_title_role(self, role: str) -> None:
        self.issues_title.setProperty("role", role)
        self.issues_title.style().polish(self.issues_title)

    def _issue_row(self, severity: str, row, date, column, message: str) -> None:
        item = QTreeWidgetItem(self.issues, [severity, "" if row is None else str(row), date or "",
                                             column or "", message])
        item.setToolTip(4, message)
        if severity == "Error":
            item.setForeground(0, Qt.GlobalColor.red)

    def set_palette(self, palette: Palette) -> None:
        self.chart.set_palette(palette)
