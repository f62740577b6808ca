"""The run history as a tree that shows lineage: price run -> strategy run -> backtests -> exports.

Sortable and filterable (QSortFilterProxyModel, recursive so a matching backtest keeps its runs
visible); the details pane shows a record's recipe, split and metrics, formatted; selecting several
rows puts their metrics side by side and overlays their loss curves (training runs) or their equity
curves rebased to 1 at their common start (backtests), named by instrument, kind and short id.
Commands act on the current row.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from engine.jobs.backtest import load_backtest_frame
from engine.jobs.portfolio import load_portfolio_frames
from engine.store import RunStore
from workstation.charts import LegendPlot, style_axes
from workstation.panels.history_details import (
    backtest_details,
    backtest_label,
    compare_backtests,
    compare_runs,
    dataset_name,
    run_details,
    run_label,
)
from workstation.theme import Palette

COLUMNS = ["Run", "Kind", "Status", "Dataset", "Model", "Key metrics", "Started", "Duration"]
KEY_ROLE = Qt.ItemDataRole.UserRole + 1  # ("run" | "backtest" | "export", id)
SORT_ROLE = Qt.ItemDataRole.UserRole + 2  # numbers sort as numbers, not as text
RESUMABLE = ("interrupted", "cancelled", "failed")
LOSS_SERIES = ("val/loss", "train/loss")  # the first a run has is overlaid
SYMBOL_POINTS = 50  # series this short get a dot per point: a one-epoch run's single value is no line


def _model_text(record: dict) -> str:
    model = record["config"].get("model", {})
    if record["kind"] == "price":
        return f"d{model.get('d_model')}×{model.get('n_layers')} {model.get('attention', '')}/{model.get('ffn', '')}"
    return f"{model.get('cell', '')} {model.get('state_dim', '')}"


def _key_metrics(kind: str, m: dict) -> tuple[str, float]:
    """A short summary and the number the column sorts by."""
    def pct(key: str) -> str:
        return f"{m[key]:+.2%}" if isinstance(m.get(key), float) else "n/a"

    if kind == "price" and "val_loss" in m:
        acc = m.get("direction_accuracy")
        return f"val loss {m['val_loss']:.4g}" + (f" · direction {acc:.1%}" if acc is not None else ""), m["val_loss"]
    if kind == "strategy" and "val_total_return" in m:
        return f"val return {pct('val_total_return')} · excess {pct('val_excess_return')}", m["val_total_return"]
    if kind == "backtest":
        sharpe = m.get("sharpe")
        return (f"return {pct('total_return')} · Sharpe {sharpe:.2f} · max DD {pct('max_drawdown')}"
                if sharpe is not None else f"return {pct('total_return')}"), m.get("total_return") or 0.0
    return "", float("nan")


def _duration(started: str | None, ended: str | None) -> tuple[str, float]:
    if not started or not ended:
        return "", float("nan")
    seconds = (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()
    minutes, secs = divmod(int(seconds), 60)
    return (f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m {secs:02d}s"), seconds


def _row(key: tuple[str, str], cells: list[tuple[str, object]]) -> list[QStandardItem]:
    items = []
    for text, sort in cells:
        item = QStandardItem(text)
        item.setEditable(False)
        item.setData(sort, SORT_ROLE)
        item.setData(key, KEY_ROLE)
        items.append(item)
    return items


def tree_parents(runs: list[dict]) -> dict[str, str | None]:
    """Each run's parent row: its parent_run (a strategy's price run, a retrain's rolling run), else
    the rolling run whose blocks list it (retrains recorded before they kept a parent_run)."""
    parents = {r["run_id"]: r["parent_run"] for r in runs}
    for record in runs:
        if record["kind"] == "rolling":
            for block in (record["metrics"] or {}).get("blocks", []):
                parents.update({child: record["run_id"] for child in block["runs"] if parents.get(child, "") is None})
    return parents


def _depth(run_id: str, parents: dict[str, str | None]) -> int:
    """Rows above a run in the tree (parents are added before their children)."""
    depth, seen = 0, {run_id}
    while (run_id := parents.get(run_id)) in parents and run_id not in seen:
        depth += 1
        seen.add(run_id)
    return depth


def backtest_equity(record: dict) -> pd.Series:
    """A backtest's equity by date: a portfolio's book, else the single-instrument strategy's."""
    if record["config"].get("kind") == "portfolio":
        return load_portfolio_frames(record)[0]["equity"]
    return load_backtest_frame(record)["strategy_equity"]


class HistoryPanel(QWidget):
    """Every run, backtest and export in the SQLite history."""

    open_forecast = Signal(str)  # price run id
    open_backtest = Signal(str)  # backtest id
    backtest_requested = Signal(str)  # run id to preselect in the wizard
    resume_requested = Signal(str)  # run id
    backtest_deleted = Signal(str)  # backtest id

    def __init__(self, store: RunStore, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("historyPanel")
        self.store, self.palette_ = store, palette
        self.model = QStandardItemModel(0, len(COLUMNS))
        self.model.setHorizontalHeaderLabels(COLUMNS)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.tree = QTreeView()
        self.tree.setModel(self.proxy)
        self.tree.setSortingEnabled(True)
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter: run id, kind, status, dataset, metric…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._on_filter)
        self.details = QTextBrowser()
        self.details.setPlaceholderText("Select a run to see its recipe, split and results")
        self.compare = QTableWidget()
        self.compare.setToolTip("Metrics of the selected backtests (or runs), side by side")
        self.compare.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.compare.setAlternatingRowColors(True)
        self.compare.setVisible(False)
        self.compare.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # every column in view
        self._build_plots()
        self._build_buttons()
        self._layout()
        self.tree.selectionModel().selectionChanged.connect(self._on_selection)
        self.tree.doubleClicked.connect(lambda _: self._open_current())
        self.refresh()

    def _build_plots(self) -> None:
        self.loss_widget = LegendPlot("Loss (validation where recorded)")
        self.equity_widget = LegendPlot("Backtest equity, rebased to 1 at the common start",
                                        axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        for widget in (self.loss_widget, self.equity_widget):
            style_axes(widget.getPlotItem(), self.palette_)
            widget.getPlotItem().getViewBox().setDefaultPadding(0.05)  # no curve runs along the frame
            widget.setMinimumHeight(160)
        self.loss_widget.setLabel("bottom", "step")
        self.equity_widget.setVisible(False)
        self.compare_curves: list[pg.PlotDataItem] = []

    def _build_buttons(self) -> None:
        self.buttons: dict[str, QPushButton] = {}
        for key, text, tip, slot in (
                ("refresh", "Refresh", "Read the history file again (F5)", self.refresh),
                ("forecast", "Open in Forecast", "Show the price network's forecasts (a strategy run: its "
                 "price network)", self._open_forecast),
                ("backtest", "Backtest…", "Backtest this run (opens the wizard with it chosen)",
                 lambda: self.backtest_requested.emit(self._current()[1])),
                ("show", "Show backtest", "Fill the Positions and Equity panels with this backtest",
                 lambda: self.open_backtest.emit(self._current()[1])),
                ("resume", "Resume", "Continue an interrupted, cancelled or failed run from its last checkpoint",
                 lambda: self.resume_requested.emit(self._current()[1])),
                ("delete", "Delete…", "Delete the run (its backtests, export records and checkpoint files) "
                 "or the backtest (its export records) on the current row", self.delete_current)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            self.buttons[key] = button
        self.buttons["refresh"].setShortcut("F5")

    def _layout(self) -> None:
        bar = QHBoxLayout()
        bar.addWidget(self.filter, 1)
        for button in self.buttons.values():
            bar.addWidget(button)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.details)
        right.addWidget(self.compare)
        right.addWidget(self.loss_widget)
        right.addWidget(self.equity_widget)
        for i, stretch in enumerate((2, 2, 3, 3)):  # details, comparison, loss, equity
            right.setStretchFactor(i, stretch)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.tree)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([980, 560])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(bar)
        layout.addWidget(splitter, 1)

    def chart_widget(self) -> QWidget:
        return self.equity_widget if self.equity_widget.isVisible() else self.loss_widget

    # --- the tree ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Rebuild the tree from the history file (cheap: a few queries, no frames decoded)."""
        self.model.removeRows(0, self.model.rowCount())
        runs = self.store.list_runs()
        rows: dict[str, QStandardItem] = {}
        parents = tree_parents(runs)
        for record in sorted(runs, key=lambda r: _depth(r["run_id"], parents)):  # parents before children
            m_text, m_sort = _key_metrics(record["kind"], record["metrics"] or {})
            d_text, d_sort = _duration(record["started"], record["ended"])
            row = _row(("run", record["run_id"]), [
                (record["run_id"], record["run_id"]), (record["kind"], record["kind"]),
                (record["status"], record["status"]), (dataset_name(record["dataset"]), record["dataset"]),
                (_model_text(record), _model_text(record)), (m_text, m_sort),
                (record["started"].replace("T", " ")[:19], record["started"]), (d_text, d_sort)])
            (rows.get(parents[record["run_id"]]) or self.model.invisibleRootItem()).appendRow(row)
            rows[record["run_id"]] = row[0]
        for backtest in self.store.list_backtests():
            self._add_backtest(backtest, rows.get(backtest["run_id"]) or self.model.invisibleRootItem())
        self.tree.sortByColumn(6, Qt.SortOrder.DescendingOrder)
        self.tree.expandAll()
        for column in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(column)
        self._on_selection()

    def _add_backtest(self, backtest: dict, parent: QStandardItem) -> None:
        config = backtest["config"]
        m_text, m_sort = _key_metrics("backtest", backtest["metrics"])
        costs = f"{config.get('cost_bps', 0):g}+{config.get('slippage_bps', 0):g} bps" + \
            (" A-share" if config.get("ashare_rules") else "")
        period = f"{config.get('start')} → {config.get('end')}"
        row = _row(("backtest", backtest["backtest_id"]), [
            (backtest["backtest_id"], backtest["backtest_id"]), ("backtest", "backtest"), (period, period),
            (dataset_name(backtest["dataset"]), backtest["dataset"]), (costs, costs), (m_text, m_sort),
            (backtest["created"].replace("T", " ")[:19], backtest["created"]), ("", float("nan"))])
        parent.appendRow(row)
        for export in self.store.list_exports(backtest["backtest_id"]):
            row[0].appendRow(_row(("export", export["export_id"]), [
                (export["export_id"], export["export_id"]), ("export", "export"),
                (f"{export['rows']} rows", export["rows"]), (export["path"], export["path"]), ("", ""),
                (f"sha256 {export['sha256'][:12]}…", export["sha256"]),
                (export["created"].replace("T", " ")[:19], export["created"]), ("", float("nan"))]))

    def _on_filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)
        self.tree.expandAll()

    def _indexes(self) -> list:
        """Proxy indexes of every visible row, depth first (what a user sees, in order)."""
        out = []

        def walk(parent) -> None:
            for r in range(self.proxy.rowCount(parent)):
                index = self.proxy.index(r, 0, parent)
                out.append(index)
                walk(index)

        walk(self.tree.rootIndex())
        return out

    def rows(self) -> list[tuple[str, str]]:
        """(kind, id) of every visible row."""
        return [index.data(KEY_ROLE) for index in self._indexes()]

    def select(self, ids: list[str]) -> None:
        """Select the rows of these ids (runs or backtests), as ctrl-clicks would."""
        selection = self.tree.selectionModel()
        selection.clearSelection()
        for index in self._indexes():
            if index.data(KEY_ROLE)[1] in ids:
                selection.setCurrentIndex(index, selection.SelectionFlag.NoUpdate)
                selection.select(index, selection.SelectionFlag.Select | selection.SelectionFlag.Rows)

    def current_run(self) -> str | None:
        """The run on the current row (the Ledger panel marks it live)."""
        kind, key = self._current()
        return key if kind == "run" else None

    def _selected(self) -> list[tuple[str, str]]:
        return [index.data(KEY_ROLE) for index in self.tree.selectionModel().selectedRows()]

    def _current(self) -> tuple[str, str]:
        index = self.tree.currentIndex()
        return index.data(KEY_ROLE) if index.isValid() else ("", "")

    # --- details, overlays and commands ------------------------------------------------------------

    def _on_selection(self, *_args) -> None:
        kind, key = self._current()
        record = self.store.get_run(key) if kind == "run" else None
        backtest = self.store.get_backtest(key) if kind == "backtest" else None
        self.details.setHtml(self._details(kind, record, backtest, key))
        run_kind, status = (record or {}).get("kind"), (record or {}).get("status")
        self.buttons["forecast"].setEnabled(run_kind in ("price", "strategy"))
        self.buttons["backtest"].setEnabled(status == "finished" and run_kind in ("price", "strategy"))
        self.buttons["show"].setEnabled(backtest is not None)
        self.buttons["resume"].setEnabled(status in RESUMABLE and run_kind in ("price", "strategy"))
        self.buttons["delete"].setEnabled(backtest is not None or (record is not None and status != "running"))
        self.buttons["delete"].setText("Delete backtest…" if backtest is not None else "Delete run…")
        self._overlay()

    def _details(self, kind: str, record: dict | None, backtest: dict | None, key: str) -> str:
        if record is not None:
            return run_details(record, self.store.checkpoints(key))
        if backtest is not None:
            return backtest_details(backtest)
        return key

    def _overlay(self) -> None:
        """Loss curves of the selected runs, or equity curves of the selected backtests."""
        for widget in (self.loss_widget, self.equity_widget):
            widget.getPlotItem().clear()
        self.compare_curves = []
        selected = self._selected()
        runs = [key for kind, key in selected if kind == "run"]
        backtests = [key for kind, key in selected if kind == "backtest"]
        for i, run_id in enumerate(runs):
            name = next((n for n in LOSS_SERIES if self.store.metric_series(run_id, n)), None)
            if name:
                steps, values = np.asarray(self.store.metric_series(run_id, name), dtype=float).T
                self._curve(self.loss_widget, steps, values, f"{run_label(self.store.get_run(run_id))} {name}", i)
        records = [self.store.get_backtest(b) for b in backtests]
        curves = [backtest_equity(r) for r in records]
        start = max((c.index[0] for c in curves), default=None)
        for i, (record, equity) in enumerate(zip(records, curves)):
            if start <= equity.index[-1]:  # overlapping: rebased to 1 on the first day they all have
                equity = equity.loc[start:] / equity.loc[start:].iloc[0]
            else:  # disjoint periods: each from 1 at its own start
                equity = equity / equity.iloc[0]
            seconds = equity.index.to_numpy().astype("datetime64[s]").astype(np.float64)  # unit-safe epoch
            self._curve(self.equity_widget, seconds, equity.to_numpy(float), backtest_label(record), i)
        self.equity_widget.setVisible(bool(backtests))
        self.loss_widget.setVisible(bool(runs) or not backtests)
        self._compare(runs, records)

    def _compare(self, runs: list[str], backtests: list[dict]) -> None:
        """Two or more backtests (else runs) selected: their metrics side by side."""
        if len(backtests) >= 2:
            columns, rows = compare_backtests(backtests)
        elif len(runs) >= 2:
            columns, rows = compare_runs([self.store.get_run(r) for r in runs])
        else:
            self.compare.setVisible(False)
            return
        self.compare.clear()
        self.compare.setColumnCount(len(columns))
        self.compare.setRowCount(len(rows))
        self.compare.setHorizontalHeaderLabels(columns)
        self.compare.setVerticalHeaderLabels([row[0] for row in rows])
        for r, row in enumerate(rows):
            for c, text in enumerate(row[1:]):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.compare.setItem(r, c, item)
        self.compare.setVisible(True)

    def _curve(self, widget: pg.PlotWidget, x: np.ndarray, y: np.ndarray, name: str, i: int) -> None:
        colour = self.palette_.series[i % len(self.palette_.series)]
        dots = dict(symbol="o", symbolSize=6, symbolBrush=colour, symbolPen=None) if len(x) <= SYMBOL_POINTS else {}
        curve = widget.plot(x, y, pen=pg.mkPen(colour, width=2), name=name, **dots)
        self.compare_curves.append(curve)

    def _open_current(self) -> None:
        kind, key = self._current()
        if kind == "backtest":
            self.open_backtest.emit(key)
        elif kind == "run":
            self._open_forecast()

    def _open_forecast(self) -> None:
        kind, key = self._current()
        record = self.store.get_run(key) if kind == "run" else None
        if record and record["kind"] in ("price", "strategy"):
            self.open_forecast.emit(record["config"]["price_run"] if record["kind"] == "strategy" else key)

    def delete_current(self) -> bool:
        """Delete the current run or backtest after confirmation; True when it was deleted."""
        kind, key = self._current()
        if kind == "backtest":
            return self._delete_backtest(key)
        record = self.store.get_run(key) if kind == "run" else None
        if record is None:
            return False
        backtests = self.store.list_backtests(key)
        children = [r["run_id"] for r in self.store.list_runs() if r["parent_run"] == key]
        text = (f"Delete {record['kind']} run {key}?\n\nIts metrics, {len(backtests)} backtest(s), their "
                f"export records and its checkpoint folder are removed for good (exported CSV files are kept).")
        if children:
            text += f"\n\n{len(children)} strategy run(s) trained on it stay, but can no longer be backtested."
        if not self._confirm("Delete run", text):
            return False
        self.store.delete_run(key, delete_files=True)
        for backtest in backtests:
            self.backtest_deleted.emit(backtest["backtest_id"])
        self.refresh()
        return True

    def _delete_backtest(self, backtest_id: str) -> bool:
        exports = self.store.list_exports(backtest_id)
        text = (f"Delete backtest {backtest_id}?\n\nIts results and {len(exports)} export record(s) are removed "
                "for good; the run it tested and any exported CSV files are kept.")
        if not self._confirm("Delete backtest", text):
            return False
        self.store.delete_backtest(backtest_id)
        self.backtest_deleted.emit(backtest_id)
        self.refresh()
        return True

    def _confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def set_palette(self, palette: Palette) -> None:
        self.palette_ = palette
        for widget in (self.loss_widget, self.equity_widget):
            widget.setBackground(palette.base)
            style_axes(widget.getPlotItem(), palette)
