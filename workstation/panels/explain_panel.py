"""Why this forecast, why this position: the explanation of the day picked in the Forecast or Positions panel.

The window's closes, the price network's attention from its last day to every day of the window (a layer
or all, a head or their mean, or the rollout across layers) as a strip aligned to the closes' dates, the
integrated-gradients heat map (day x feature) of the forecast median or of the strategy's chosen position,
the largest contributions in words and the regime voters. The engine computes it (engine.explain) through
the panel's own JobRunner, off the UI thread and never queued behind a training job.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from engine.config import HORIZON
from engine.events import Finished
from engine.explain import Attribution, Explanation, explain_job
from engine.store import RunStore
from workstation.charts import date_plot, link_x, style_axes
from workstation.jobs import JobRunner
from workstation.panels.layout import column, panel_layout, split
from workstation.theme import Palette

MEAN = -1  # the selectors' "mean of heads" / "all layers" entry


class ExplainPanel(QWidget):
    """Explains one (model, dataset, day) at a time; a new pick while one runs replaces the queued one."""

    shown = Signal(object)  # the Explanation drawn
    message = Signal(str)

    def __init__(self, store: RunStore, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("explainPanel")
        self.store, self.palette_ = store, palette
        self.explanation: Explanation | None = None
        self._request: tuple[object, str, str] | None = None
        self._queued = False
        self.runner = JobRunner(self)
        self.title = QLabel("Pick a day in the Forecast or Positions panel to see why the model said what it said.")
        self.title.setWordWrap(True)
        self.horizon = QSpinBox()
        self.horizon.setRange(1, HORIZON)
        self.horizon.setValue(HORIZON)
        self.horizon.setPrefix("h = ")
        self.horizon.setToolTip("The forecast horizon whose median is attributed")
        self.layer, self.head = QComboBox(), QComboBox()
        self.layer.setToolTip("Attention of one layer, or the mean over layers")
        self.head.setToolTip("Attention of one head, or the mean over heads")
        self.rollout = QCheckBox("Rollout across layers")
        self.rollout.setToolTip("Attention rollout (Abnar & Zuidema): every layer's attention with its residual, "
                                "chained from the input to the last day (mean over heads)")
        self.target = QComboBox()
        self.target.setToolTip("What the heat map attributes")
        self.target.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.chart = pg.GraphicsLayoutWidget()
        self.top_text = QLabel()
        self.top_text.setWordWrap(True)
        self.top_text.setTextFormat(Qt.TextFormat.RichText)
        self.top_text.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.voters = QTableWidget(0, 4)
        self.voters.setHorizontalHeaderLabels(["Voter", "Vote", "Statistic", "Bounds"])
        self.voters.verticalHeader().setVisible(False)
        self.voters.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.voters.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.regime_title = QLabel("Regime")
        self._build_plots()
        self._layout()
        self.horizon.valueChanged.connect(self._rerun)
        for box in (self.layer, self.head, self.target):
            box.currentIndexChanged.connect(self._draw)
        self.rollout.toggled.connect(self._draw)
        self.runner.finished.connect(self._on_finished)

    def _build_plots(self) -> None:
        p = self.palette_
        self.price_plot = date_plot(pd.DatetimeIndex([]))
        self.strip_plot = date_plot(pd.DatetimeIndex([]))
        self.heat_plot = date_plot(pd.DatetimeIndex([]))
        for row, (plot, label, stretch) in enumerate(((self.price_plot, "Close", 3), (self.strip_plot, "Attention", 1),
                                                      (self.heat_plot, "Attribution", 4))):
            self.chart.addItem(plot, row=row, col=0)
            self.chart.ci.layout.setRowStretchFactor(row, stretch)
            plot.setLabel("left", label)
            plot.getAxis("left").setWidth(96)
            plot.setMouseEnabled(x=True, y=False)
            plot.hideButtons()
            style_axes(plot, p, grid=plot is self.price_plot)
        self.strip_plot.getAxis("left").setTicks([[], []])
        link_x([self.price_plot, self.strip_plot, self.heat_plot])
        self.close_curve = self.price_plot.plot(pen=pg.mkPen(p.accent, width=1.5))
        self.strip = pg.ImageItem()
        self.strip.setColorMap(pg.colormap.get("viridis"))
        self.strip_plot.addItem(self.strip)
        self.heat = pg.ImageItem()
        self.heat.setColorMap(pg.colormap.get("CET-D1"))
        self.heat_plot.addItem(self.heat)

    def _layout(self) -> None:
        top = QHBoxLayout()
        for label, widget in (("Explain", self.target), ("", self.horizon), ("Layer", self.layer),
                              ("Head", self.head)):
            if label:
                top.addWidget(QLabel(label))
            top.addWidget(widget)
        top.addWidget(self.rollout)
        top.addStretch(1)
        side = column(QLabel("<b>Largest contributions</b>"), (self.top_text, 1), self.regime_title, self.voters)
        panel_layout(self, self.title, top, body=split(self.chart, side, [900, 420]))

    # --- requests -----------------------------------------------------------------------------

    def explain(self, model_ref: object, dataset: str, date: str) -> None:
        """Explain the window ending on date (a run id, a checkpoint or a loaded model) in the background."""
        self._request = (model_ref, dataset, date)
        if self.runner.is_running():  # the newest pick wins; the running one finishes first
            self._queued = True
            return
        self._queued = False
        store, horizon = self.store, self.horizon.value()
        name = model_ref if isinstance(model_ref, str) else "model"
        self.title.setText(f"Explaining {name} on {dataset} at {date}…")
        self.runner.start(lambda token: explain_job(model_ref, dataset, date, horizon, store, cancel=token),
                          f"Explaining {date}")

    @Slot()
    def _rerun(self) -> None:
        if self._request is not None:
            self.explain(*self._request)

    def stop(self, timeout_ms: int = 30_000) -> None:
        """Cancel a running explanation and wait for its thread (the window is closing)."""
        self._queued = False
        if self.runner.is_running():
            self.runner.cancel()
            self.runner.wait(timeout_ms)

    @Slot(object)
    def _on_finished(self, result: object) -> None:
        if self._queued:
            self._rerun()
            return
        if isinstance(result, Finished):  # the job raised: a bad day, file or checkpoint
            reason = (result.error or "").strip().splitlines()[-1:] or ["unknown error"]
            self.title.setText(f"Cannot explain: {reason[0]}")
            self.message.emit(self.title.text())
            return
        if isinstance(result, Explanation):
            self.show_explanation(result)

    # --- drawing ------------------------------------------------------------------------------

    def show_explanation(self, ex: Explanation) -> None:
        self.explanation = ex
        layers, heads, _ = ex.attention.shape
        self._fill(self.layer, ["all layers (mean)"] + [f"layer {i + 1}" for i in range(layers)])
        self._fill(self.head, ["mean of heads"] + [f"head {i + 1}" for i in range(heads)])
        self._fill(self.target, [f"forecast median (h = {ex.horizon})"]
                   + ([f"position {ex.position} logit"] if ex.strategy else []))
        position = f"; the strategy chose position {ex.position}/10" if ex.position is not None else ""
        self.title.setText(f"<b>{ex.instrument} · {ex.asof}</b> &nbsp; {ex.horizon}-day median forecast "
                           f"{ex.forecast_return:+.2%} (log){position}")
        dates = pd.DatetimeIndex(ex.dates)
        for plot in (self.price_plot, self.strip_plot, self.heat_plot):
            plot.getAxis("bottom").set_dates(dates)
        x = np.arange(len(dates), dtype=float)
        self.close_curve.setData(x, ex.close)
        self.price_plot.setXRange(-0.5, len(dates) - 0.5, padding=0)
        self._fill_regime(ex.regime)
        self._draw()
        self.shown.emit(ex)

    @staticmethod
    def _fill(box: QComboBox, items: list[str]) -> None:
        """New items, keeping the chosen index where it still exists."""
        index = box.currentIndex()
        box.blockSignals(True)
        box.clear()
        box.addItems(items)
        box.setCurrentIndex(index if 0 <= index < len(items) else 0)
        box.blockSignals(False)

    def attention_row(self) -> np.ndarray:
        """[window] the attention the selectors ask for."""
        ex = self.explanation
        if self.rollout.isChecked():
            return ex.rollout
        layer, head = self.layer.currentIndex() - 1, self.head.currentIndex() - 1
        maps = ex.attention if layer == MEAN else ex.attention[layer:layer + 1]
        maps = maps.mean(axis=1) if head == MEAN else maps[:, head]
        return maps.mean(axis=0)

    def attribution(self) -> Attribution:
        ex = self.explanation
        return ex.strategy if self.target.currentIndex() == 1 and ex.strategy else ex.forecast

    @Slot()
    def _draw(self) -> None:
        ex = self.explanation
        if ex is None:
            return
        self.layer.setEnabled(not self.rollout.isChecked())
        self.head.setEnabled(not self.rollout.isChecked())
        row = self.attention_row()
        n = len(row)
        self.strip.setImage(row[:, None], levels=(0.0, float(row.max()) or 1.0))
        self.strip.setRect(QRectF(-0.5, 0, n, 1))
        attr = self.attribution()
        values = attr.values
        start = n - len(values)  # a strategy walk covers the window's last days
        span = float(np.abs(values).max()) or 1.0
        self.heat.setImage(values, levels=(-span, span))
        self.heat.setRect(QRectF(start - 0.5, 0, len(values), values.shape[1]))
        ticks = [(i + 0.5, name) for i, name in enumerate(attr.features)]
        self.heat_plot.getAxis("left").setTicks([ticks if len(ticks) <= 16 else ticks[-HORIZON:], []])
        self.heat_plot.setYRange(0, values.shape[1], padding=0)
        self.strip_plot.setYRange(0, 1, padding=0)
        self._fill_words(attr)

    def _fill_words(self, attr: Attribution) -> None:
        p = self.palette_
        items = "".join(f"<li>{t['text']}</li>" for t in attr.top())
        days = ", ".join(f"{d['date']} ({d['value'] * attr.scale:+.3g})" for d in attr.top_days(3))
        gap = (f"<span style='color:{p.warn}'>completeness gap {attr.completeness_gap:.1%} "
               f"after {attr.nodes} nodes</span>" if attr.completeness_gap > 0.01 else
               f"attributions add up to output − baseline within {attr.completeness_gap:.2%} of their size "
               f"({attr.nodes} nodes)")
        self.top_text.setText(
            f"<ul style='margin-left:-20px'>{items}</ul><p>Days that moved it most: {days}</p>"
            f"<p style='color:{p.muted}'>Integrated gradients of {attr.target} ({attr.units}) against "
            f"{attr.baseline}: output {attr.output:+.4g}, baseline {attr.baseline_output:+.4g}; {gap}.</p>")

    def _fill_regime(self, regime: dict | None) -> None:
        if regime is None:
            self.regime_title.setText("Regime: unknown (too little history)")
            self.voters.setRowCount(0)
            return
        self.regime_title.setText(f"<b>Regime: {regime['label']}</b> (majority of three votes on the last "
                                  f"{regime['lookback']} daily returns)")
        self.voters.setRowCount(len(regime["voters"]))
        for r, v in enumerate(regime["voters"]):
            cells = [v["voter"], v["vote"], f"{v['statistic']:+.4%}", f"[{v['low']:+.4%}, {v['high']:+.4%}]"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(v["rule"])
                self.voters.setItem(r, c, item)

    def set_palette(self, palette: Palette) -> None:
        self.palette_ = palette
        for plot in (self.price_plot, self.strip_plot, self.heat_plot):
            style_axes(plot, palette, grid=plot is self.price_plot)
        self.close_curve.setPen(pg.mkPen(palette.accent, width=1.5))
        self._draw()
