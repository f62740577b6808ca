"""End of day in the GUI: the live models, each one's paper ledger against the backtest of the same
days (two equity curves and the daily gap in bp: the proof that a backtest means what it says), a red
banner when live returns leave the backtest's interval, tomorrow's orders with the rules that may
block them, and updating a dataset from a newer export.

The engine does the work (engine.ledger, engine.jobs.signal, engine.data.update); the signal and
update jobs run off the UI thread on the panel's own JobRunner, so a training job never queues them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.data.update import UpdateReport, data_folder, training_periods, update_dataset
from engine.events import CancelToken, Finished, Progress
from engine.jobs.signal import SignalReport, signal_job, write_orders
from engine.ledger import ledger_report
from engine.store import RunStore
from workstation.charts import LegendPlot, style_axes
from workstation.jobs import JobRunner
from workstation.panels.history_details import dataset_name
from workstation.theme import Palette
from workstation.wizards.backtest_wizard import universe_names
from workstation.wizards.mark_live import MarkLiveDialog

SAVE_FOLDER_KEY = "folders/save"  # the main window's key: every save dialog starts where the last one wrote
ORDER_HEADERS = ["Instrument", "Side", "Size", "Unit", "Ref. price", "Fill day", "Limit up", "Limit down",
                 "Blocked", "Rule"]
REVISION_HEADERS = ["Instrument", "Date", "Column", "Held value", "New value"]
GAP_TOLERANCE_BPS = 1.0  # the ledger and the backtest of the same bars agree within this a day
DAY_S = 86_400.0
MIN_SPAN_DAYS = 6  # the shortest span the date axis shows


def _timestamps(dates: list[str]) -> np.ndarray:
    """Dates as epoch seconds (pyqtgraph's DateAxisItem)."""
    return ((pd.DatetimeIndex(dates) - pd.Timestamp(0)) / pd.Timedelta(seconds=1)).to_numpy(np.float64)


def update_job(store: RunStore, dataset: str, newer: str, accept_revisions: bool,
               cancel: CancelToken) -> Generator[Progress, None, UpdateReport]:
    """update_dataset as a job: reading two exports of many instruments takes seconds."""
    yield Progress(0, 1, f"Updating {dataset_name(dataset)} from {Path(newer).name}")
    report = update_dataset(dataset, newer, data_folder(store.path), accept_revisions=accept_revisions,
                            periods=training_periods(store, dataset))
    yield Progress(1, 1, "Updated")
    return report


class UpdateDialog(QDialog):
    """What an update did: bars added, revised values (kept old unless applied) and the runs that
    trained on a revised day."""

    apply_requested = Signal()

    def __init__(self, report: UpdateReport, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Updated {dataset_name(report.dataset)}")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        verb = "applied" if report.accepted else "kept at their held values"
        self.summary = QLabel(f"<b>{report.added}</b> new bar(s) over {report.instruments} instrument(s), held in "
                              f"{report.held}.<br>{len(report.revised)} revised value(s), {verb}.")
        self.summary.setWordWrap(True)
        self.revisions = QTableWidget(len(report.revised), len(REVISION_HEADERS))
        self.revisions.setHorizontalHeaderLabels(REVISION_HEADERS)
        self.revisions.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.revisions.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        for i, r in enumerate(report.revised):
            for j, value in enumerate((r.instrument, r.date, r.column, "—" if r.old is None else f"{r.old:g}",
                                       f"{r.new:g}")):
                self.revisions.setItem(i, j, QTableWidgetItem(value))
        self.warnings = QLabel("<br>".join(f"⚠ {t['message']}" for t in report.trained_on))
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet(f"color: {palette.warn};")
        self.warnings.setVisible(bool(report.trained_on))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.apply = buttons.addButton("Apply revisions", QDialogButtonBox.ButtonRole.ActionRole)
        self.apply.setToolTip("Replace the held values by the revised ones (recorded in the data folder's log)")
        self.apply.setVisible(bool(report.revised) and not report.accepted)
        self.apply.clicked.connect(self.apply_requested)
        self.apply.clicked.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.revisions, 1)
        layout.addWidget(self.warnings)
        layout.addWidget(buttons)
        self.resize(640, 360)


class LedgerPanel(QWidget):
    """Live models, their paper ledgers and tomorrow's orders."""

    message = Signal(str)
    shown = Signal(object)  # ledger_report's dict
    signals_issued = Signal(object)  # SignalReport
    updated = Signal(object)  # UpdateReport

    def __init__(self, store: RunStore, palette: Palette, selected_run: Callable[[], str | None],
                 current_source: Callable[[], str | None], sources: Callable[[], list[tuple[str, str]]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ledgerPanel")
        self.store, self.palette_ = store, palette
        self.selected_run, self.current_source, self.sources = selected_run, current_source, sources
        self.runner = JobRunner(self)
        self.runner.finished.connect(self._on_finished)
        self.report: dict | None = None  # the ledger shown
        self.signals: SignalReport | None = None  # the latest orders
        self.update_dialog: UpdateDialog | None = None
        self._pending_update: tuple[str, str] | None = None  # (dataset, newer) of the update running
        self.live = QListWidget()
        self.live.setToolTip("Models marked live: their signals are issued and paper-traded")
        self.live.currentItemChanged.connect(lambda *_: self.show_ledger())
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self.summary = QLabel("Mark a run live, then issue tomorrow's signals each evening.")
        self.summary.setWordWrap(True)
        self.gap_label = QLabel()
        self.orders_title = QLabel("Orders: none issued yet")
        self.orders = QTableWidget(0, len(ORDER_HEADERS))
        self.orders.setHorizontalHeaderLabels(ORDER_HEADERS)
        self.orders.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.orders.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.orders.horizontalHeader().setStretchLastSection(True)
        self._build_plots()
        self._build_buttons()
        self._layout()
        self.set_palette(palette)
        self.refresh()

    def _build_plots(self) -> None:
        axis = {"bottom": pg.DateAxisItem(orientation="bottom")}
        self.equity_plot = LegendPlot("Paper equity against the backtest of the same days", axisItems=axis)
        self.gap_plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.gap_plot.setTitle("Daily gap, paper minus backtest (bp)")
        self.gap_plot.setXLink(self.equity_plot.getPlotItem().getViewBox())
        self.paper_curve = self.equity_plot.plot([], [], name="paper ledger")
        self.backtest_curve = self.equity_plot.plot([], [], name="backtest, same bars")
        self.gap_bars = pg.BarGraphItem(x=[], height=[], width=0.8 * DAY_S)
        self.gap_plot.addItem(self.gap_bars)
        for widget in (self.equity_plot, self.gap_plot):
            widget.setMinimumHeight(140)
            widget.getPlotItem().getAxis("left").setWidth(64)  # labels of 1.0123 or ±1e-9 bp fit from the start

    def _build_buttons(self) -> None:
        self.buttons: dict[str, QPushButton] = {}
        for key, text, tip, slot in (
                ("mark", "Mark live…", "Mark the run selected in History live on a dataset", self.choose_mark_live),
                ("unmark", "Unmark", "Stop issuing signals for the selected live model (its ledger is kept)",
                 self.unmark_current),
                ("signals", "Tomorrow's signals", "Every live model scores its latest bar: ledgers are appended "
                 "and the orders to tomorrow's targets listed, then offered as CSV", self.issue_signals),
                ("save", "Save orders…", "Save the latest orders as CSV", self.offer_save)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            self.buttons[key] = button

    def _layout(self) -> None:
        bar = QHBoxLayout()
        for button in self.buttons.values():
            bar.addWidget(button)
        bar.addStretch(1)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Live models"))
        left_layout.addWidget(self.live, 1)
        charts = QSplitter(Qt.Orientation.Vertical)
        charts.addWidget(self.equity_plot)
        charts.addWidget(self.gap_plot)
        orders = QWidget()
        orders_layout = QVBoxLayout(orders)
        orders_layout.setContentsMargins(0, 0, 0, 0)
        orders_layout.addWidget(self.orders_title)
        orders_layout.addWidget(self.orders, 1)
        charts.addWidget(orders)
        for i, stretch in enumerate((3, 1, 3)):  # a portfolio lists an order per name
            charts.setStretchFactor(i, stretch)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.banner)
        right_layout.addWidget(self.summary)
        right_layout.addWidget(self.gap_label)
        right_layout.addWidget(charts, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 4)
        splitter.setSizes([260, 1000])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(bar)
        layout.addWidget(splitter, 1)

    def chart_widget(self) -> QWidget:
        return self.equity_plot

    # --- live models and their ledgers -----------------------------------------------------------

    def refresh(self) -> None:
        """The live models from the history; the current one stays selected."""
        current = self.current_model()
        self.live.blockSignals(True)
        self.live.clear()
        for mark in self.store.live_models():
            item = QListWidgetItem(f"{mark['run_id']}\non {dataset_name(mark['dataset'])}")
            item.setData(Qt.ItemDataRole.UserRole, (mark["run_id"], mark["dataset"]))
            item.setToolTip(f"{mark['run_id']} live on {mark['dataset']} since {mark['at']}")
            self.live.addItem(item)
            if current and (mark["run_id"], mark["dataset"]) == current:
                self.live.setCurrentItem(item)
        if self.live.currentItem() is None and self.live.count():
            self.live.setCurrentRow(0)
        self.live.blockSignals(False)
        self.buttons["unmark"].setEnabled(self.live.count() > 0)
        self.buttons["signals"].setEnabled(self.live.count() > 0 and not self.runner.is_running())
        self.buttons["save"].setEnabled(bool(self.signals and self.signals.orders))
        self.show_ledger()

    def current_model(self) -> tuple[str, str] | None:
        item = self.live.currentItem()
        return tuple(item.data(Qt.ItemDataRole.UserRole)) if item else None

    def show_ledger(self) -> None:
        """The selected live model's ledger against the backtest of the same days (engine.ledger_report)."""
        model = self.current_model()
        ledgers = {row["run_id"] for row in self.store.ledgers()}
        if model is None or model[0] not in ledgers:
            self.report = None
            self._draw(None)
            self.summary.setText("No paper ledger yet: issue tomorrow's signals to start one." if model else
                                 "No live model: select a run in History and mark it live.")
            return
        try:
            self.report = ledger_report(self.store, model[0])
        except ValueError as error:  # one day so far: nothing to compare with yet
            self.report = None
            self._draw(None)
            self.summary.setText(f"{model[0]}: the paper ledger has started; the backtest of the same days needs "
                                 f"a second day ({error}).")
            return
        self._draw(self.report)
        self.shown.emit(self.report)

    def _draw(self, report: dict | None) -> None:
        if report is None:
            for curve in (self.paper_curve, self.backtest_curve):
                curve.setData([], [])
            self.gap_bars.setOpts(x=[], height=[])
            self.gap_label.clear()
            self.banner.setVisible(False)
            return
        x = _timestamps(report["dates"])
        view = self.equity_plot.getPlotItem().getViewBox()
        if x[-1] - x[0] < MIN_SPAN_DAYS * DAY_S:  # a young ledger: days on the axis, not hours
            middle = (x[0] + x[-1]) / 2
            view.setXRange(middle - MIN_SPAN_DAYS * DAY_S / 2, middle + MIN_SPAN_DAYS * DAY_S / 2, padding=0)
        else:
            view.enableAutoRange(x=True)
        self.paper_curve.setData(x, np.asarray(report["equity"]))
        self.backtest_curve.setData(x, np.asarray(report["backtest_equity"]))
        gaps = np.asarray(report["gap_bps"], dtype=np.float64)
        self.gap_bars.setOpts(x=x, height=gaps)
        span = 1.2 * max(GAP_TOLERANCE_BPS, float(np.abs(gaps).max()))  # rounding noise stays flat against 1 bp
        self.gap_plot.setYRange(-span, span, padding=0)
        worst = report["max_daily_gap_bps"]
        verdict = ("agree within 1 bp a day" if worst < GAP_TOLERANCE_BPS else
                   "DISAGREE by more than 1 bp on some day: the backtest does not mean what it says")
        self.gap_label.setText(f"Largest daily gap {worst:.4f} bp: paper and backtest {verdict}")
        self.gap_label.setStyleSheet("" if worst < GAP_TOLERANCE_BPS else f"color: {self.palette_.error};")
        book = report["book"]
        if report.get("portfolio"):  # a live portfolio: the weights held at the close, largest first
            held = sorted(((w, n) for n, w in book["weights"].items() if w > 5e-5), reverse=True)
            cash = round(book["cash"] / report["equity"][-1], 4) + 0.0  # no "-0.0 %" from rounding
            decision = "new targets at this close" if book["target"] else "held, no decision"
            holding = "book " + ", ".join(f"{n} {w:.1%}" for w, n in held) + f", cash {cash:.1%} · {decision}"
        else:
            signal = "none" if book["signal"] is None else f"{book['signal']}/10"
            holding = f"book {book['quantity']:.4f} shares, cash {book['cash']:.4f} · signal {signal}"
        self.summary.setText(
            f"<b>{report['run_id']}</b> on {dataset_name(report['dataset'])}: {report['days']} day(s) to "
            f"{book['date']} · paper equity {report['equity'][-1]:.4f} · backtest {report['backtest_equity'][-1]:.4f}"
            f" · {holding}")
        alarm = report["alarm"]
        self.banner.setText(f"ALARM: {alarm['message']}" + (f" (reference backtest {alarm['reference']})"
                                                              if alarm.get("reference") else ""))
        self.banner.setToolTip("Rolling live returns against the central band of the run's recorded backtest")
        self.banner.setVisible(bool(alarm["alarm"]))

    # --- mark live -------------------------------------------------------------------------------

    def choose_mark_live(self) -> MarkLiveDialog | None:
        """Ask which dataset the History panel's selected run trades, and how (non-blocking), then mark it."""
        run_id = self.selected_run()
        record = self.store.get_run(run_id) if run_id else None
        if record is None or record["kind"] not in ("price", "strategy") or record["status"] != "finished":
            self.message.emit("Select a finished price or strategy run in the History panel first.")
            return None
        datasets = list(dict.fromkeys([record["dataset"], *(s for s in [self.current_source()] if s),
                                       *universe_names(self.sources())]))
        dialog = MarkLiveDialog(run_id, datasets, self)
        dialog.mark_requested.connect(lambda dataset, config: self.mark_live(run_id, dataset, config))
        dialog.open()
        return dialog

    def mark_live(self, run_id: str, dataset: str, config: dict | None = None) -> None:
        """config: a portfolio mark's (engine.portfolio.ledger.mark_config), None for single instruments."""
        self.store.mark_live(run_id, dataset, True, config)
        self.refresh()
        for row in range(self.live.count()):
            if tuple(self.live.item(row).data(Qt.ItemDataRole.UserRole)) == (run_id, dataset):
                self.live.setCurrentRow(row)
        how = f" as one portfolio ({config['portfolio']['method']})" if config else ""
        self.message.emit(f"{run_id} is live on {dataset_name(dataset)}{how}")

    def unmark_current(self) -> None:
        model = self.current_model()
        if model is not None:
            self.store.mark_live(*model, False)
            self.message.emit(f"{model[0]} is no longer live on {dataset_name(model[1])}; its ledger is kept")
            self.refresh()

    # --- jobs: tomorrow's signals, updates ---------------------------------------------------------

    def issue_signals(self) -> None:
        if self.runner.is_running():
            self.message.emit(f"Wait for {self.runner.name} to finish.")
            return
        store = self.store
        self.buttons["signals"].setEnabled(False)
        self.runner.start(lambda token: signal_job(store, cancel=token), "Tomorrow's signals")

    def choose_update(self, dataset: str | None = None) -> QFileDialog | None:
        """Pick the newer export of the chosen dataset (the Data panel's, else the live model's)."""
        model = self.current_model()
        dataset = dataset or self.current_source() or (model[1] if model else None)
        if not dataset:
            self.message.emit("Select a dataset in the Data panel (or a live model) to update first.")
            return None
        dialog = QFileDialog(self, f"Update {dataset_name(dataset)} from a newer export",
                             str(QSettings().value("folders/import", Path.home())))
        dialog.setFileMode(QFileDialog.FileMode.AnyFile)
        dialog.setNameFilters(["Daily bars (*.csv *.txt *.xlsx *.xls)", "All files (*)"])
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.fileSelected.connect(lambda path: self.start_update(dataset, path))
        dialog.open()
        return dialog

    def start_update(self, dataset: str, newer: str, accept_revisions: bool = False) -> None:
        if self.runner.is_running():
            self.message.emit(f"Wait for {self.runner.name} to finish.")
            return
        store = self.store
        self._pending_update = (dataset, newer)
        self.runner.start(lambda token: update_job(store, dataset, newer, accept_revisions, token),
                          f"Updating {dataset_name(dataset)}")

    def _on_finished(self, result: object) -> None:
        self.buttons["signals"].setEnabled(self.live.count() > 0)
        if isinstance(result, Finished):  # the job raised: say why in a box that does not block
            lines = (result.error or "unknown error").strip().splitlines()
            box = QMessageBox(QMessageBox.Icon.Warning, "End of day", f"{self.runner.name} failed: {lines[-1]}",
                              parent=self)
            box.setDetailedText(result.error or "")
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()
            return
        if isinstance(result, SignalReport):
            self.show_signals(result)
            self.refresh()
            self.signals_issued.emit(result)
            self.offer_save()
        elif isinstance(result, UpdateReport):
            self.show_update(result)

    def show_signals(self, report: SignalReport) -> None:
        """Targets in the title, one row per order; a blocked order is red with its reason."""
        self.signals = report
        targets = ", ".join(f"{t['instrument']} {t['position']}/10" if "position" in t else
                            f"{t['instrument']} {t['weight']:.1%}" for t in report.targets
                            if t.get("position") is not None or t.get("weight", 0.0) > 5e-5)
        fills = {t["fill"] for t in report.targets}
        when = (f"at the close of {report.asof}" if fills == {"close"} else f"for the open after {report.asof}"
                + (f" (at the close of {report.asof} where the data have no opens)" if "close" in fills else ""))
        self.orders_title.setText(f"Orders {when} ({report.ledger_days} ledger day(s) recorded) · targets: {targets}")
        self.orders_title.setToolTip("\n".join(report.rules))
        self.orders.setRowCount(len(report.orders))
        for i, o in enumerate(report.orders):
            cells = (o.instrument, o.side, f"{o.size:.6g}", o.unit, f"{o.reference_price:.4f}", o.fill_day,
                     "" if o.limit_up is None else f"{o.limit_up:.2f}",
                     "" if o.limit_down is None else f"{o.limit_down:.2f}", o.blocked, o.rule)
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if o.blocked:
                    item.setForeground(QColor(self.palette_.error))
                self.orders.setItem(i, j, item)

    def offer_save(self) -> str | None:
        """The usual save dialog, starting where the last save wrote; the path written, if any."""
        if not (self.signals and self.signals.orders):
            return None
        folder = Path(str(QSettings().value(SAVE_FOLDER_KEY, Path.home())))
        path, _ = QFileDialog.getSaveFileName(self, "Save orders", str(folder / f"orders-{self.signals.asof}.csv"),
                                              "CSV files (*.csv)")
        return self.save_orders(path) if path else None

    def save_orders(self, path: str) -> str | None:
        try:
            rows = write_orders(self.signals, path)
        except OSError as error:
            QMessageBox.warning(self, "Save failed", str(error))
            return None
        QSettings().setValue(SAVE_FOLDER_KEY, str(Path(path).parent))
        self.message.emit(f"Saved {rows} order(s) to {path}")
        return path

    def show_update(self, report: UpdateReport) -> UpdateDialog:
        dataset, newer = self._pending_update or (report.dataset, "")
        self.update_dialog = UpdateDialog(report, self.palette_, self)
        self.update_dialog.apply_requested.connect(lambda: self.start_update(dataset, newer, True))
        self.update_dialog.open()
        self.updated.emit(report)
        self.message.emit(f"{dataset_name(report.dataset)}: {report.added} new bar(s), "
                          f"{len(report.revised)} revised value(s)")
        return self.update_dialog

    def stop(self, timeout_ms: int = 30_000) -> None:
        """Cancel and join a running job (the window is closing)."""
        if self.runner.is_running():
            self.runner.cancel()
            self.runner.wait(timeout_ms)

    def set_palette(self, palette: Palette) -> None:
        self.palette_ = palette
        self.banner.setStyleSheet(f"background: {palette.error}; color: white; font-weight: bold; padding: 6px;")
        for widget in (self.equity_plot, self.gap_plot):
            style_axes(widget.getPlotItem(), palette)
        self.paper_curve.setPen(pg.mkPen(palette.accent, width=2))
        self.backtest_curve.setPen(pg.mkPen(palette.series[1], width=1.5, style=Qt.PenStyle.DashLine))
        self.gap_bars.setOpts(brush=pg.mkBrush(palette.muted), pen=pg.mkPen(None))
