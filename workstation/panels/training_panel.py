"""Live view of a training job: losses, gradient norms, learning rate, a distributional head's
validation pinball loss and band coverage, progress, cancel, failures.

Events only append to buffers; a ~10 Hz timer pushes the buffers into curves created once, so the
UI thread never redraws per step (per-step redraws slowed training 2.5-7x, docs/ENVIRONMENT).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QWidget,
)

from engine.events import CheckpointEvent, EvalEvent, Finished, Progress, RunStarted, StepEvent
from engine.store import RunStore
from workstation.charts import link_x, style_axes
from workstation.jobs import HISTORY_ADVICE, JobRunner, is_history_fault
from workstation.panels.evaluation_table import EvaluationView
from workstation.panels.layout import column, panel_layout, split
from workstation.status import format_eta
from workstation.theme import Palette

REDRAW_MS = 100
MAX_POINTS = 5000  # per curve; beyond it older points are merged (min/max), see DecimatedSeries
TOTAL = "total"
GRAD_PREFIX = "grad:"
EXPLODING_RATIO = 50.0  # a grad norm this many times the run's median so far is called exploding
COVERAGE = (50, 80, 90)  # the validation bands a quantile or Student-t head reports (EvalEvent metrics)
VAL_METRICS = ("pinball", *(f"coverage_{pct}" for pct in COVERAGE))  # absent for a point head


class DecimatedSeries:
    """Columns of values on one step axis, at most `cap` rows however long a run lasts.

    The newest cap/2 rows are kept as logged. Older rows form a coarse part of min/max pairs: each
    bin of rows becomes two, the lowest and the highest value of each column in the order they
    occurred, at the bin's first and last step, so a spike survives every merge. When the coarse
    part fills half its budget its bins double, so its resolution stays even over the whole run.
    Memory and redraw cost stay flat over an overnight run.
    """

    def __init__(self, names: list[str], cap: int = MAX_POINTS) -> None:
        if cap % 8:
            raise ValueError(f"cap must be a multiple of 8, got {cap}")
        self.cap, self.n = cap, 0
        self.coarse = 0  # rows [0, coarse) are min/max pairs
        self.weights = np.zeros(cap // 2, dtype=np.int64)  # logged rows behind each pair
        self.bin = 4  # logged rows a pair takes before the next pair starts
        self.names = list(names)
        self.x = np.empty(cap)
        self.y = np.full((cap, len(names)), np.nan)

    def __len__(self) -> int:
        return self.n

    def append(self, x: float, values: dict[str, float]) -> None:
        """One row; a column seen for the first time is NaN before it (gaps are not drawn)."""
        for name in values:
            if name not in self.names:
                self.names.append(name)
                self.y = np.hstack([self.y, np.full((self.cap, 1), np.nan)])
        if self.n == self.cap:
            self._make_room()
        self.x[self.n] = x
        self.y[self.n] = [values.get(name, math.nan) for name in self.names]
        self.n += 1

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Copies of (steps, values): curves keep them, and the buffers are rewritten in place."""
        return self.x[:self.n].copy(), self.y[:self.n, self.names.index(name)].copy()

    def _make_room(self) -> None:
        """Move the logged rows beyond the newest cap/2 into the coarse part."""
        if self.coarse > self.cap // 4:  # the coarse part used half its budget: halve its resolution
            self._coarsen()
        spare = self.n - self.coarse - self.cap // 2
        pairs = self.coarse // 2
        if pairs and self.weights[pairs - 1] < self.bin:  # the last pair is still open: fill it
            take = min(spare, self.bin - int(self.weights[pairs - 1]))
            self._merge(self.coarse - 2, self.coarse + take, take + 2)
            self.weights[pairs - 1] += take
            spare -= take
        full, rest = divmod(spare, self.bin)
        sizes = [self.bin] * full + ([rest] if rest > 1 else [])  # a single row stays as logged
        for size, count in ((self.bin, full), (rest, int(rest > 1))):
            if count:
                self.coarse += self._merge(self.coarse, self.coarse + size * count, size)
        self.weights[pairs:pairs + len(sizes)] = sizes

    def _coarsen(self) -> None:
        """Merge neighbouring pairs (an odd last one stays): half the rows, bins twice as long."""
        pairs = self.coarse // 2
        even = pairs - pairs % 2
        written = self._merge(0, 2 * even, 4)
        w = self.weights[:pairs].copy()
        self.weights[:even // 2] = w[:even].reshape(-1, 2).sum(axis=1)
        self.weights[even // 2:even // 2 + pairs % 2] = w[even:]
        self.coarse -= 2 * even - written
        self.bin *= 2

    def _merge(self, start: int, stop: int, size: int) -> int:
        """Rows [start, stop) become min/max pairs of `size` rows; later rows move up. Returns the
        number of rows written."""
        x, y = self.x[start:stop].reshape(-1, size), self.y[start:stop].reshape(-1, size, len(self.names))
        lowest = np.argmin(np.where(np.isnan(y), np.inf, y), axis=1)  # NaN only where all are
        highest = np.argmax(np.where(np.isnan(y), -np.inf, y), axis=1)
        order = np.stack([np.minimum(lowest, highest), np.maximum(lowest, highest)], axis=1)
        end = start + 2 * len(x)
        self.y[start:end] = np.take_along_axis(y, order, axis=1).reshape(end - start, -1)
        self.x[start:end] = x[:, [0, -1]].reshape(-1)
        tail = self.n - stop
        self.x[end:end + tail] = self.x[stop:self.n]  # numpy copies overlapping slices safely
        self.y[end:end + tail] = self.y[stop:self.n]
        self.n = end + tail
        return end - start


class _Series:
    """The buffers of one run: training rows (loss, learning rate, gradient norms) and evaluations."""

    def __init__(self) -> None:
        self.train = DecimatedSeries(["loss", "lr", TOTAL])
        self.val = DecimatedSeries(["val_loss", *VAL_METRICS])
        self.best: tuple[int, float] | None = None
        self.last_step = 0

    def add_step(self, e: StepEvent) -> None:
        self.train.append(e.step, {"loss": e.loss, "lr": e.lr, TOTAL: e.grad_norm,
                                   **{GRAD_PREFIX + k: v for k, v in e.module_grad_norms.items()}})
        self.last_step = e.step

    def grad_names(self) -> list[str]:
        """TOTAL and the modules, in the order they were first seen."""
        return [TOTAL] + [n[len(GRAD_PREFIX):] for n in self.train.names if n.startswith(GRAD_PREFIX)]


class TrainingPanel(QWidget):
    """Plots and controls of the job the JobRunner is running; with a run history, a finished price
    run's forecast quality on its test period below them."""

    def __init__(self, runner: JobRunner, palette: Palette, parent: QWidget | None = None, *,
                 store: RunStore | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainingPanel")
        self.runner = runner
        self.palette_ = palette
        self.data = _Series()
        self.run_id = ""
        self._training = False  # a training run has started in the current job (not a backtest)
        self._kind = ""
        self.evaluation = EvaluationView(store) if store is not None else None
        self._speed_text = ""
        self._dirty = False
        self._build_controls()
        self._build_plots()
        self._layout()
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self._tick)
        runner.started.connect(self._on_started)
        runner.stepped.connect(self._on_step)
        runner.evaluated.connect(self._on_eval)
        runner.checkpointed.connect(self._on_checkpoint)
        runner.progressed.connect(self._on_progress)
        runner.progress_changed.connect(self._on_progress_changed)
        runner.finished.connect(self._on_finished)
        runner.busy_changed.connect(self._on_busy)

    # --- construction -----------------------------------------------------------------------

    def _build_controls(self) -> None:
        self.title = QLabel("No training job yet: Run ▸ Train… (Ctrl+N)")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.phase = QLabel("")  # a long phase before the steps, e.g. "Encoding features of SSE (1/3)"
        self.phase.setObjectName("phase")
        self.speed = QLabel("")
        self.eta = QLabel("")
        for label in (self.speed, self.eta):  # fixed widths: a changing text must not relayout the plots
            label.setMinimumWidth(120)
            label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop at the next step; the run is recorded as cancelled (Esc)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.log_y = QCheckBox("Log scale")
        self.log_y.setToolTip("Show losses on a logarithmic axis")
        self.log_y.toggled.connect(lambda on: self.loss_plot.setLogMode(y=on))
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(60)
        self.smoothing.setFixedWidth(140)
        self.smoothing.setToolTip("Exponential moving average of the training loss (0 = raw)")
        self.smoothing_label = QLabel(f"{self.smoothing.value() / 100:.2f}")
        self.smoothing.valueChanged.connect(self._on_smoothing)
        self.modules = QListWidget()
        self.modules.setToolTip("Which gradient norms to plot: the total and each module's")
        self.modules.itemChanged.connect(lambda _item: self._mark_dirty())
        self._add_module_item(TOTAL)

    def _build_plots(self) -> None:
        p = self.palette_
        self.plots = pg.GraphicsLayoutWidget()
        self.loss_plot = self.plots.addPlot(row=0, col=0, colspan=2, title="Loss")
        self.grad_plot = self.plots.addPlot(row=1, col=0, colspan=2, title="Gradient norm")
        self.lr_plot = self.plots.addPlot(row=2, col=0, colspan=2, title="Learning rate")
        self.pinball_plot = self.plots.addPlot(row=3, col=0, title="Validation pinball")
        self.coverage_plot = self.plots.addPlot(row=3, col=1, title="Validation coverage (50 / 80 / 90 %)")
        for plot in self._plots():
            style_axes(plot, p, grid=False)  # a grid overlaps the curves: every update repaints the axes
            plot.getAxis("left").setWidth(56)
            plot.hideButtons()
        for plot in (self.pinball_plot, self.coverage_plot):
            plot.setLabel("bottom", "step")
        for plot in (self.loss_plot, self.grad_plot, self.lr_plot):  # x is shared; labelled once, at the bottom
            plot.getAxis("bottom").setStyle(showValues=False)
        link_x(self._plots())
        self.loss_plot.addLegend(offset=(-10, 10), brush=pg.mkBrush(p.base + "d0"))
        self.train_curve = self.loss_plot.plot(pen=pg.mkPen(p.accent, width=1), name="train")
        self.train_curve.setOpacity(0.35)
        self.smooth_curve = self.loss_plot.plot(pen=pg.mkPen(p.accent, width=2), name="train (smoothed)")
        self.val_curve = self.loss_plot.plot(pen=pg.mkPen(p.series[1], width=2), symbol="o", symbolSize=6,
                                             symbolBrush=p.series[1], symbolPen=None, name="validation")
        # A data item, not a bare ScatterPlotItem: only data items follow the plot's log scale.
        self.best_marker = self.loss_plot.plot(pen=None, symbol="star", symbolSize=16, symbolBrush=p.up,
                                               symbolPen=pg.mkPen(p.text), name="best checkpoint")
        self.grad_curves: dict[str, pg.PlotDataItem] = {TOTAL: self.grad_plot.plot(pen=pg.mkPen(p.accent))}
        self.lr_curve = self.lr_plot.plot(pen=pg.mkPen(p.series[2], width=2))
        self.pinball_curve = self.pinball_plot.plot(pen=pg.mkPen(p.series[1], width=2), symbol="o", symbolSize=5,
                                                    symbolBrush=p.series[1], symbolPen=None)
        self.coverage_curves: dict[int, pg.PlotDataItem] = {}
        for pct, colour in zip(COVERAGE, p.series):
            pen = pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine)
            self.coverage_plot.addItem(pg.InfiniteLine(pct / 100, angle=0, pen=pen))  # where calibrated
            self.coverage_curves[pct] = self.coverage_plot.plot(pen=pg.mkPen(colour, width=2), symbol="o",
                                                                symbolSize=5, symbolBrush=colour, symbolPen=None)
        self.coverage_plot.setYRange(0.3, 1.0, padding=0.02)
        self.stop_lines: list[pg.InfiniteLine] = []

    def _plots(self) -> list[pg.PlotItem]:
        return [self.loss_plot, self.grad_plot, self.lr_plot, self.pinball_plot, self.coverage_plot]

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.phase)
        for widget in (self.progress, self.speed, self.eta, self.cancel_button):
            top.addWidget(widget)
        options = QHBoxLayout()
        options.addWidget(self.log_y)
        options.addSpacing(16)
        options.addWidget(QLabel("Smoothing"))
        options.addWidget(self.smoothing)
        options.addWidget(self.smoothing_label)
        options.addStretch(1)
        side = column(QLabel("Gradient norms"), self.modules)
        body = split(self.plots, side, [900, 200])
        if self.evaluation is not None:
            body = split(body, self.evaluation, [560, 250], orientation=Qt.Orientation.Vertical)
        panel_layout(self, top, self.banner, options, body=body)

    def _add_module_item(self, name: str) -> None:
        item = QListWidgetItem(name)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if name == TOTAL else Qt.CheckState.Unchecked)
        self.modules.addItem(item)

    def _forget_modules(self) -> None:
        """Drop the previous run's module curves and list entries: another model has other modules,
        and its norms would set the scale of the new run's plot."""
        for name in [n for n in self.grad_curves if n != TOTAL]:
            self.grad_plot.removeItem(self.grad_curves.pop(name))
        for row in reversed(range(1, self.modules.count())):  # row 0 is the total
            self.modules.takeItem(row)
        self.grad_curves[TOTAL].setData([], [])

    def _grad_curve(self, name: str) -> pg.PlotDataItem:
        """The curve of one module, made the first time that module is seen (then reused)."""
        if name not in self.grad_curves:
            colour = self.palette_.series[len(self.grad_curves) % len(self.palette_.series)]
            self.grad_curves[name] = self.grad_plot.plot(pen=pg.mkPen(colour))
            self._add_module_item(name)
        return self.grad_curves[name]

    # --- events -----------------------------------------------------------------------------

    @Slot(object)
    def _on_started(self, e: RunStarted) -> None:
        self._training = True
        self.data = _Series()
        self._forget_modules()
        self.run_id, self._kind = e.run_id, e.kind
        self.title.setText(f"{e.kind.capitalize()} run {e.run_id}")
        self.phase.setText("")
        self._speed_text = ""
        if self.evaluation is not None:
            self.evaluation.discard()  # the previous run's figures are no longer news
            self.evaluation.clear(f"The forecast quality of {e.run_id} on its test period appears here "
                                  "when it finishes." if e.kind == "price" else "")
        self.progress.setRange(0, max(1, e.total_steps))
        self.progress.setValue(0)
        # The whole run's x range up front: axes stay still while curves grow (cheap repaints).
        if e.total_steps > 0:
            self.loss_plot.enableAutoRange(x=False)
            self.loss_plot.setXRange(0, e.total_steps, padding=0.02)
        else:  # unknown length (a run followed from the history): follow the data
            self.loss_plot.enableAutoRange(x=True)
        for line in self.stop_lines:
            self.loss_plot.removeItem(line)
        self.stop_lines = []
        self._hide_banner()
        self.redraw()

    @Slot(object)
    def _on_step(self, e: StepEvent) -> None:
        previous = self.data.train.column(TOTAL)[1]  # bounded: at most MAX_POINTS values
        self.data.add_step(e)
        if self.phase.text():  # the preparation is over
            self.phase.setText("")
        self._speed_text = f"{e.samples_per_s:,.0f} samples/s"
        if not (math.isfinite(e.loss) and math.isfinite(e.grad_norm)):
            self._show_banner(f"Non-finite loss or gradient at step {e.step}: training is diverging.", "error")
        elif len(previous) >= 10 and e.grad_norm > EXPLODING_RATIO * float(np.nanmedian(previous)):
            self._show_banner(f"Gradient norm exploding at step {e.step}: {e.grad_norm:.3g} "
                              f"(median so far {np.nanmedian(previous):.3g}). Lower the learning rate.", "warn")
        self._mark_dirty()

    @Slot(object)
    def _on_eval(self, e: EvalEvent) -> None:
        shown = {k: e.metrics[k] for k in VAL_METRICS if k in e.metrics}
        self.data.val.append(e.step, {"val_loss": e.val_loss, **shown})
        if e.is_best:
            self.data.best = (e.step, e.val_loss)
        self._mark_dirty()

    @Slot(object)
    def _on_checkpoint(self, e: CheckpointEvent) -> None:
        if e.is_best:
            self.title.setToolTip(f"Best checkpoint: {e.path}")

    @Slot(object)
    def _on_progress(self, e: Progress) -> None:
        """A phase without optimiser steps (encoding features, forecasting a backtest): its name,
        then "done / total" in place of the speed (JobRunner sends the count right after)."""
        self.phase.setText(e.message)

    @Slot(int, int, float)
    def _on_progress_changed(self, done: int, total: int, eta: float) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))
        if self.phase.text():
            self._speed_text = f"{done:,} / {total:,}"
            self.speed.setText(self._speed_text)  # now: the plots need no redraw for it
        self.eta.setText(format_eta(eta))

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)
        if busy:
            self.timer.start()
        else:
            self.timer.stop()

    @Slot(object)
    def _on_finished(self, e: Finished) -> None:
        preparing = self.phase.text()
        self.phase.setText("")
        if not self._training:  # a backtest, or a training job that failed before its first step
            return
        self._training = False
        self.redraw()
        self.eta.setText("")
        last = self.data.last_step
        if e.status == "failed":
            self._add_stop_line(last, "failed", self.palette_.error)
            self._show_banner(f"Training failed at step {last}: {_summary(e.error)}", "error")
        elif e.status == "cancelled":
            when = f"while {preparing[0].lower()}{preparing[1:]}" if preparing and not last else f"at step {last}"
            self._show_banner(f"Cancelled {when}; the run is recorded as cancelled.", "warn")
        elif getattr(e, "early_stopped", False):  # a walk-forward trains, then ends in a BacktestRecord
            self._add_stop_line(last, "early stop", self.palette_.warn)
        if e.status == "finished" and self._kind == "price" and self.evaluation is not None:
            self.evaluation.evaluate(e.run_id or self.run_id)  # on the datasets it trained on
        self.title.setText(f"{self.title.text().split(' · ')[0]} · {e.status}")

    def show_failure(self, e: Finished) -> None:
        """The dialog of a failed training job (the main window calls it once the job has ended)."""
        box = QMessageBox(QMessageBox.Icon.Critical, "Training failed",
                          f"{f'The run {e.run_id}' if e.run_id else 'Training'} stopped: {_summary(e.error)}",
                          parent=self)
        box.setInformativeText(HISTORY_ADVICE if is_history_fault(e.error) else
                               "Common causes: a learning rate too high for the model size, fp16 "
                               "overflow, or a dataset too short for the window.")
        box.setDetailedText(e.error or "")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # window-modal but non-blocking: training threads and tests keep running

    def _add_stop_line(self, step: int, label: str, colour: str) -> None:
        line = pg.InfiniteLine(step, angle=90, pen=pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine),
                               label=label, labelOpts={"color": colour, "position": 0.9})
        self.loss_plot.addItem(line, ignoreBounds=True)
        self.stop_lines.append(line)

    def _show_banner(self, text: str, kind: str) -> None:
        self.banner.setText(text)
        self.banner.setProperty("role", f"banner-{kind}")
        self.banner.style().polish(self.banner)
        self.banner.setVisible(True)

    def _hide_banner(self) -> None:
        self.banner.setVisible(False)

    # --- drawing ----------------------------------------------------------------------------

    def _mark_dirty(self) -> None:
        self._dirty = True

    @Slot()
    def _tick(self) -> None:
        if self._dirty:
            self.redraw()

    def _on_smoothing(self, value: int) -> None:
        self.smoothing_label.setText(f"{value / 100:.2f}")
        self.redraw()

    @Slot()
    def redraw(self) -> None:
        """Push the bounded buffers into the existing curves (by the timer, and once at the end)."""
        d = self.data
        steps, loss = d.train.column("loss")
        self.train_curve.setData(steps, loss)
        weight = self.smoothing.value() / 100
        smooth = pd.Series(loss).ewm(alpha=1 - weight, adjust=False).mean().to_numpy() if weight else loss
        self.smooth_curve.setData(steps, smooth)
        self.val_curve.setData(*d.val.column("val_loss"))
        self.pinball_curve.setData(*d.val.column("pinball"), connect="finite")
        for pct, curve in self.coverage_curves.items():
            curve.setData(*d.val.column(f"coverage_{pct}"), connect="finite")
        self.best_marker.setData([d.best[0]] if d.best else [], [d.best[1]] if d.best else [])
        for name in d.grad_names():
            curve = self._grad_curve(name)
            item = self.modules.findItems(name, Qt.MatchFlag.MatchExactly)[0]
            shown = item.checkState() == Qt.CheckState.Checked
            curve.setVisible(shown)
            if shown:
                curve.setData(*d.train.column(name if name == TOTAL else GRAD_PREFIX + name), connect="finite")
        self.lr_curve.setData(*d.train.column("lr"))
        self.speed.setText(self._speed_text)
        self._dirty = False

    def set_palette(self, palette: Palette) -> None:
        self.palette_ = palette
        self.plots.setBackground(palette.base)
        for plot in self._plots():
            style_axes(plot, palette, grid=False)


def _summary(text: str | None) -> str:
    """The last line of an error (a traceback's last line is the exception itself)."""
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else "unknown error"
