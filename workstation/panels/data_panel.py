"""Datasets: the bundled samples and the user's imports, their import problems, and their chart.

A universe (a folder, a TDX vipdoc root, a wide close table) is a group of its instruments; it imports in
the background (JobRunner) with a progress bar and Cancel, then shows its coverage and its errors by file.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from engine.data.io import MARKETS, BarTable, DataImportError, load_bars
from engine.data.samples import list_samples, list_universes
from engine.data.universe import (
    Universe,
    UniverseFilters,
    is_universe,
    member_names,
    member_source,
    split_member,
    universe_job,
)
from workstation.charts import PriceChart
from workstation.jobs import JobRunner
from workstation.panels.layout import PANEL_MARGIN, split, stack
from workstation.theme import Palette

IMPORTED_KEY = "data/imported"
FOLDER_KEY = "folders/import"
LOG_KEY = "data/log_scale"
MARKETS_KEY = "data/markets"  # {source: market} the user chose; absent: inferred on import
MARKET_LABELS = {"cn": "cn: A-share, ±10 % daily limit", "us": "us: no daily limit",
                 "unknown": "unknown: no daily limit"}
FILE_FILTER = "Daily bars (*.csv *.txt *.xls *.xlsx *.tsv);;All files (*)"
UNIVERSES_KEY = "data/universes"  # JSON [{"source", "filters"}] of imported universes
SOURCE_ROLE = Qt.ItemDataRole.UserRole
UNIVERSE_ROLE = Qt.ItemDataRole.UserRole + 1  # True on a universe's group item
FILTERS_ROLE = Qt.ItemDataRole.UserRole + 2  # a universe group's UniverseFilters as JSON


class DataPanel(QWidget):
    """List on the left (datasets, details, problems), candle + volume chart on the right."""

    selection_changed = Signal(str)  # source: a sample name or a file path
    imported = Signal(str)
    import_failed = Signal(str)
    universe_loaded = Signal(object)  # the Universe, after a background import (not when cancelled)

    def __init__(self, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dataPanel")
        self.setAcceptDrops(True)
        self._cache: dict[str, BarTable] = {}
        self._universes: dict[str, Universe] = {}
        self.universe_runner = JobRunner(self)
        self.universe_button = QPushButton("Import universe…")
        self.universe_button.setToolTip("Import many instruments: a folder of files, a TDX vipdoc folder or a "
                                        "wide close table (runs in the background); you can also drop a folder")
        self.universe_progress = QProgressBar()
        self.universe_progress.setFormat("importing %v / %m")
        self.universe_cancel = QPushButton("Cancel")
        self.universe_cancel.setToolTip("Stop the universe import (nothing is added)")
        for w in (self.universe_progress, self.universe_cancel):
            w.setVisible(False)
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
        self.universe_button.clicked.connect(lambda: self.choose_universe())
        self.universe_cancel.clicked.connect(self.universe_runner.cancel)
        self.universe_runner.progress_changed.connect(self._on_universe_progress)
        self.universe_runner.busy_changed.connect(self._on_universe_busy)
        self.universe_runner.finished.connect(self._on_universe_finished)
        self.market.currentIndexChanged.connect(self._on_market)
        self._fill()

    def _layout(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.universe_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        buttons.addWidget(QLabel("Market"))
        buttons.addWidget(self.market)
        buttons.addWidget(self.log_scale)
        left = QWidget()
        progress = QHBoxLayout()
        progress.addWidget(self.universe_progress, 1)
        progress.addWidget(self.universe_cancel)
        stack(left, (self.tree, 3), buttons, progress, self.details, self.issues_title, (self.issues, 2),
              margin=PANEL_MARGIN)
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
        for universe in list_universes():
            self._universe_group(self.bundled_group, universe.name, universe.instrument)
        for path in self.imported_paths():
            self._add_item(self.imported_group, Path(path).name, path, "", "")
        for entry in self.imported_universes():
            self._universe_group(self.imported_group, entry["source"], Path(entry["source"]).name,
                                 UniverseFilters.from_dict(entry["filters"]))
        self.tree.setCurrentItem(self.bundled_group.child(0))

    @staticmethod
    def _add_item(group: QTreeWidgetItem, label: str, source: str, bars: str, span: str) -> QTreeWidgetItem:
        item = QTreeWidgetItem(group, [label, bars, span])
        item.setData(0, SOURCE_ROLE, source)
        item.setToolTip(0, source)
        return item

    # --- what other panels and the wizard ask for -------------------------------------------

    def _universe_group(self, parent: QTreeWidgetItem, source: str, label: str,
                        filters: UniverseFilters | None = None) -> QTreeWidgetItem:
        """A universe's group, its instruments listed by name until its import fills in bars and spans."""
        filters = filters or UniverseFilters()
        group = self._add_item(parent, label, source, "", "")
        group.setData(0, UNIVERSE_ROLE, True)
        group.setData(0, FILTERS_ROLE, json.dumps(filters.to_dict()))
        for name in (n for n in member_names(source) if filters.keeps_name(n)):
            self._add_item(group, name, member_source(source, name), "", "")
        group.setText(1, f"{group.childCount():,} instr.")
        return group

    def _items(self) -> list[QTreeWidgetItem]:
        """Every dataset item: bundled, imported and each universe's instruments (not the group itself)."""
        out = []
        for group in (self.bundled_group, self.imported_group):
            for i in range(group.childCount()):
                item = group.child(i)
                out += [item.child(j) for j in range(item.childCount())] if item.data(0, UNIVERSE_ROLE) else [item]
        return out

    def sources(self) -> list[tuple[str, str]]:
        """(label, source) of every dataset, bundled first; a universe's instruments as UNIVERSE:CODE."""
        return [(item.text(0), item.data(0, SOURCE_ROLE)) for item in self._items()]

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
        for item in [*self._items(), *self._universe_groups()]:
            if item.data(0, SOURCE_ROLE) == source:
                self.tree.setCurrentItem(item)

    def _universe_groups(self) -> list[QTreeWidgetItem]:
        return [g.child(i) for g in (self.bundled_group, self.imported_group) for i in range(g.childCount())
                if g.child(i).data(0, UNIVERSE_ROLE)]

    @staticmethod
    def imported_paths() -> list[str]:
        value = QSettings().value(IMPORTED_KEY, [])
        return [value] if isinstance(value, str) else list(value or [])

    @staticmethod
    def imported_universes() -> list[dict]:
        return json.loads(QSettings().value(UNIVERSES_KEY, "[]") or "[]")

    # --- importing ------------------------------------------------------------------------

    def choose_universe(self, path: str = "") -> None:
        """The import dialog (filters), then the import in the background."""
        from workstation.panels.universe_import import UniverseImportDialog

        dialog = UniverseImportDialog(path, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.import_universe(dialog.source(), dialog.filters())

    def import_universe(self, source: str, filters: UniverseFilters | None = None) -> None:
        """Import every instrument of a universe off the UI thread; universe_loaded fires when done."""
        if self.universe_runner.is_running():
            return
        filters = filters or UniverseFilters()
        self._pending = (source, filters)
        self.issues_title.setText(f"Importing {source}…")
        self.universe_runner.start(lambda token: universe_job(source, filters, token), f"import {source}")

    def _on_universe_progress(self, done: int, total: int, _eta: float) -> None:
        self.universe_progress.setRange(0, max(total, 1))
        self.universe_progress.setValue(done)

    def _on_universe_busy(self, busy: bool) -> None:
        for w in (self.universe_progress, self.universe_cancel):
            w.setVisible(busy)
        self.universe_button.setEnabled(not busy)
        if busy:
            self.universe_progress.setValue(0)

    def _on_universe_finished(self, result) -> None:
        source, filters = self._pending
        if not isinstance(result, Universe):
            self._show_error(RuntimeError(getattr(result, "error", None) or "the import failed"))
            self.import_failed.emit(source)
            return
        if result.cancelled:
            self.issues_title.setText(f"Import of {source} cancelled: nothing was added")
            return
        group = next((g for g in self._universe_groups() if g.data(0, SOURCE_ROLE) == source), None)
        if group is None:
            QSettings().setValue(UNIVERSES_KEY, json.dumps(
                [*self.imported_universes(), {"source": source, "filters": filters.to_dict()}]))
            group = self._universe_group(self.imported_group, source, Path(source).name, filters)
        group.takeChildren()
        for table in result.tables:
            member = member_source(source, table.instrument)
            self._cache[member] = table
            self._add_item(group, table.instrument, member, f"{len(table.frame):,}",
                           f"{table.frame.index[0]:%Y}–{table.frame.index[-1]:%Y}")
        group.setText(1, f"{len(result.tables):,} instr.")
        self._universes[source] = result
        if self.tree.currentItem() is group:
            self._show_universe(group)
        else:
            self.tree.setCurrentItem(group)
        self.universe_loaded.emit(result)

    def stop_import(self) -> None:
        """Cancel a universe import and wait for its thread (the window is closing)."""
        self.universe_runner.cancel()
        self.universe_runner.wait()

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
        QSettings().setValue(UNIVERSES_KEY, json.dumps([u for u in self.imported_universes() if u["source"] != source]))
        self._universes.pop(source, None)
        self._cache.pop(source, None)
        self.imported_group.removeChild(item)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = url.toLocalFile()
                if split_member(path) is None and is_universe(path):
                    self.choose_universe(path)
                else:
                    self.import_file(path)
        event.acceptProposedAction()

    # --- showing ----------------------------------------------------------------------------

    def _on_current(self, item: QTreeWidgetItem | None, _previous=None) -> None:
        source = item.data(0, SOURCE_ROLE) if item else None
        self.remove_button.setEnabled(bool(item) and item.parent() is self.imported_group)
        if not source:
            return
        if item.data(0, UNIVERSE_ROLE):
            self._show_universe(item)
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

    def _show_universe(self, group: QTreeWidgetItem) -> None:
        """Coverage and errors by file of an imported universe; a bundled or remembered one imports first."""
        source = group.data(0, SOURCE_ROLE)
        universe = self._universes.get(source)
        if universe is None:
            self.details.setText(f"{group.text(0)}: {group.childCount():,} instruments, importing…")
            self.import_universe(source, UniverseFilters.from_dict(json.loads(group.data(0, FILTERS_ROLE))))
            return
        cov = universe.coverage
        lines = [f"{group.text(0)} · a {universe.kind} universe · {cov.instruments:,} instruments · "
                 f"{cov.rows:,} bars", f"{cov.first} → {cov.last} · every instrument trading from {cov.all_from}",
                 f"gaps over 21 days: {cov.gaps} in {cov.with_gaps} instrument(s)"]
        if universe.skipped:
            lines.append(f"left out by the filters: {len(universe.skipped):,}")
        missing = sorted({c for t in universe.tables for c in t.missing})
        if missing:
            lines.append(f"missing in some or all (masked, never invented): {', '.join(missing)}")
        self.details.setText("\n".join(lines))
        self.issues.clear()
        for error in universe.errors:
            self._issue_row("Error", None, None, Path(error.file).name, error.message)
        self.issues_title.setText(f"Import problems: {len(universe.errors)} file(s) not imported"
                                  if universe.errors else "Import problems: none")
        self._set_title_role("error" if universe.errors else "muted")
        self.selection_changed.emit(source)

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
