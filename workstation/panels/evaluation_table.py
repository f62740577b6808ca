"""How good a price network's forecasts were on its test period: the `evaluate` report as a table.

Rows are horizons 1..7; columns the figures of engine.evaluation, all in h-day log-return units so
instruments can be compared and averaged ("pooled" is the per-instrument average). The evaluation
runs off the UI thread through its own JobRunner, so it never waits for, or blocks, a training job.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from engine.config import HORIZON
from engine.events import Finished
from engine.jobs.evaluate import EvaluationReport, evaluate_job
from engine.store import RunStore
from workstation.jobs import JobRunner
from workstation.panels.layout import stack

POOLED = "pooled"
COLUMNS = [  # (header, key, format, tooltip)
    ("h", "h", "d", "Horizon: trading days ahead"),
    ("Days", "days", "d", "Forecasts scored at this horizon"),
    ("MAE ratio", "mae_ratio", ".3f", "Mean absolute error of the predicted h-day log return over that of "
                                      "the zero-return forecast: below 1 beats 'no change'"),
    ("IC", "ic", "+.3f", "Pearson correlation of predicted and realised h-day returns"),
    ("Rank IC", "rank_ic", "+.3f", "Spearman (rank) correlation of predicted and realised h-day returns"),
    ("Hit rate", "hit_rate", ".1%", "How often the predicted direction was right (days that moved)"),
    ("Up rate", "up_rate", ".1%", "How often the price rose: the hit rate of always guessing up"),
]


def _cell(value: float | int | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, fmt)


def _error_line(error: str | None) -> str:
    """The exception's own message: the last line of a traceback, without its class name."""
    lines = (error or "unknown error").strip().splitlines()
    return lines[-1].partition(": ")[2] or lines[-1]


class EvaluationView(QWidget):
    """An instrument selector (with "pooled"), a note on the period, and the horizon table."""

    reported = Signal(object)  # the EvaluationReport shown

    def __init__(self, store: RunStore, *, with_button: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("evaluationView")
        self.store = store
        self.report: EvaluationReport | None = None
        self._request: tuple[str, list[str] | None] | None = None  # what the button evaluates
        self._queued: tuple[str, list[str] | None] | None = None  # started once the running job stops
        self._discard = False  # the running job's result is no longer wanted
        self.runner = JobRunner(self)
        self.title = QLabel("<b>Forecast quality</b> on the test period")
        self.instrument = QComboBox()
        self.instrument.setToolTip("One instrument's figures, or their per-instrument average")
        self.instrument.setMinimumContentsLength(14)
        self.button = QPushButton("Evaluate")
        self.button.setToolTip("Score this model's forecasts on the test period of this dataset "
                               "(runs in the background)")
        self.button.setVisible(with_button)
        self.button.setEnabled(False)
        self.note = QLabel("")
        self.note.setProperty("role", "muted")
        self.note.setWordWrap(True)
        self.table = QTableWidget(HORIZON, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c[0] for c in COLUMNS])
        for i, column in enumerate(COLUMNS):
            self.table.horizontalHeaderItem(i).setToolTip(column[3])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.instrument)
        top.addWidget(self.button)
        stack(self, top, self.note, (self.table, 1))
        self.instrument.currentIndexChanged.connect(self._fill)
        self.button.clicked.connect(lambda: self.evaluate(*self._request) if self._request else None)
        self.runner.progress_changed.connect(self._on_progress)
        self.runner.finished.connect(self._on_finished)
        self.clear("No evaluation yet.")

    # --- requests ---------------------------------------------------------------------------

    def set_request(self, model_ref: str | None, datasets: list[str] | None) -> None:
        """What the Evaluate button scores (the panel's model and dataset); the old table is cleared."""
        self._request = (model_ref, datasets) if model_ref else None
        self.button.setEnabled(self._request is not None)
        self.clear("Press Evaluate to score this model's forecasts on the test period."
                   if self._request else "No model selected.")

    def evaluate(self, model_ref: str, datasets: list[str] | None = None) -> None:
        """Score model_ref on datasets (None: those it trained on) in the background; a running
        evaluation is cancelled first (its result would be stale)."""
        if self.runner.is_running():
            self._queued = (model_ref, datasets)
            self.runner.cancel()
            return
        store = self.store
        self.note.setText(f"Evaluating {model_ref}…")
        self.runner.start(lambda token: evaluate_job(model_ref, datasets, store=store, cancel=token),
                          f"Evaluating {model_ref}")

    def discard(self) -> None:
        """Cancel a running evaluation and ignore what it returns (another run is starting)."""
        if self.runner.is_running():
            self._discard = True
            self.runner.cancel()

    def stop(self, timeout_ms: int = 30_000) -> None:
        """Cancel a running evaluation and wait for its thread (the window is closing)."""
        self._queued = None
        if self.runner.is_running():
            self.runner.cancel()
            self.runner.wait(timeout_ms)

    @Slot(int, int, float)
    def _on_progress(self, done: int, total: int, _eta: float) -> None:
        if total > 1:
            self.note.setText(f"Evaluating… {done:,} of {total:,} forecasts")

    @Slot(object)
    def _on_finished(self, result: EvaluationReport | Finished) -> None:
        discard, self._discard = self._discard, False
        if self._queued is not None:
            request, self._queued = self._queued, None
            self.evaluate(*request)
        elif discard:
            return
        elif isinstance(result, EvaluationReport) and result.status == "finished":
            self.show_report(result)
        elif isinstance(result, EvaluationReport):
            self.note.setText("Evaluation cancelled.")
        else:
            self.clear(f"Cannot evaluate: {_error_line(result.error)}")

    # --- display ----------------------------------------------------------------------------

    def clear(self, text: str) -> None:
        self.report = None
        self.instrument.blockSignals(True)
        self.instrument.clear()
        self.instrument.blockSignals(False)
        self.instrument.setEnabled(False)
        self.table.clearContents()
        self.note.setText(text)

    def show_report(self, report: EvaluationReport) -> None:
        """Fill the selector (pooled first when there are several instruments) and the table."""
        self.report = report
        who = f"run {report.run_id}" if report.run_id else "checkpoint"
        self.title.setText(f"<b>Forecast quality</b> of {who}")
        self.instrument.blockSignals(True)
        self.instrument.clear()
        if len(report.instruments) > 1:
            self.instrument.addItem(f"Pooled ({len(report.instruments)})", POOLED)
        for name in report.instruments:
            self.instrument.addItem(name, name)
        self.instrument.blockSignals(False)
        self.instrument.setEnabled(self.instrument.count() > 1)
        self._fill()
        self.reported.emit(report)

    def rows(self) -> list[dict]:
        """The horizon rows of the selected instrument (or the pooled average)."""
        name = self.instrument.currentData()
        if self.report is None or name is None:
            return []
        return (self.report.pooled if name == POOLED else self.report.instruments[name])["horizons"]

    @Slot()
    def _fill(self) -> None:
        rows, name = self.rows(), self.instrument.currentData()
        self.table.clearContents()
        for r, row in enumerate(rows[:self.table.rowCount()]):
            for c, (_header, key, fmt, _tip) in enumerate(COLUMNS):
                item = QTableWidgetItem(_cell(row.get(key), fmt))
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        if self.report is None or name is None:
            return
        if name == POOLED:
            inside = sum(rep["in_sample"] for rep in self.report.instruments.values())
            self.note.setText(f"Per-instrument averages of {len(self.report.instruments)} instruments, "
                              "h-day log returns" + (f"; {inside} of them in-sample" if inside else "."))
        else:
            rep = self.report.instruments[name]
            where = "in-sample: overlaps training" if rep["in_sample"] else "out of sample"
            self.note.setText(f"{rep['period'][0]} … {rep['period'][1]} ({where}), h-day log returns. "
                              "MAE ratio < 1 beats the zero-return forecast.")
