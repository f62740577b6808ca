"""What the price network says: its next-7-closes path from the latest bar and from any earlier day
the user clicks, with the closes that actually followed and the error per horizon; a fan of its
50/80/90 % bands around the forecast shown, and once evaluated a reliability plot (nominal vs observed
coverage of those bands on the test period).

A forecast reads one window, so it runs on the UI thread; checkpoints are loaded once per run and
windows once per dataset (both cached), so switching back and forth costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from engine.config import HORIZON
from engine.data import BarTable, WindowSet
from engine.evaluation import BANDS
from engine.forecast import (
    Forecast,
    LoadedPriceModel,
    forecast,
    load_bars_as_trained,
    load_price_model,
    model_windows,
)
from engine.store import RunStore
from workstation.charts import PriceChart, style_axes
from workstation.panels.evaluation_table import EvaluationView
from workstation.panels.layout import column, panel_layout, split
from workstation.theme import Palette

FUTURE_BARS = HORIZON  # the chart leaves room for the forecast after the last bar
VISIBLE_BARS = 160
COLUMNS = ["h", "Date", "Predicted", "Change", "Actual", "Error", "Naive error"]
FAN_ALPHA = "2e"  # per band; the bands nest, so the 50 % band is three layers deep, the 90 % band's rim one
RELIABILITY_HORIZONS = (1, 7)
NAIVE_TIP = ("The naive forecast \"tomorrow = today\": the close of the forecast day for every horizon. "
             "A model worth using beats its error.")


class ForecastPanel(QWidget):
    """Model and dataset selectors, the candle chart with forecast paths, the table of one forecast."""

    message = Signal(str)  # why a run asked for cannot be shown as asked (for the status bar)
    day_picked = Signal(str, str, str)  # model ref, dataset, YYYY-MM-DD: the Explain panel follows it

    def __init__(self, store: RunStore, sources: Callable[[], list[tuple[str, str]]],
                 bars: Callable[[str], BarTable], palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("forecastPanel")
        self.store, self._sources, self._bars, self.palette_ = store, sources, bars, palette
        self._models: dict[str, LoadedPriceModel] = {}
        self._fallbacks: dict[str, tuple[str, str, str]] = {}  # unfinished run -> (label, path, note)
        self._windows: dict[tuple, WindowSet] = {}
        self.ws: WindowSet | None = None
        self.latest: Forecast | None = None
        self.picked: Forecast | None = None
        self.picked_index: int | None = None
        self.model = QComboBox()
        self.model.setToolTip("A finished price run from the history (its best checkpoint)")
        self.model.setMinimumContentsLength(28)
        self.dataset = QComboBox()
        self.dataset.setToolTip("The dataset to forecast")
        self.latest_button = QPushButton("Latest")
        self.latest_button.setToolTip("Forget the picked day: the table shows the forecast from the latest bar")
        self.status = QLabel("Click a day on the chart to see what the model predicted from it.")
        self.status.setProperty("role", "muted")
        fixed_lines(self.status, 1)
        self.chart = PriceChart(palette)
        self._build_items()
        self.table = QTableWidget(HORIZON, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        # A date is always ten digits wide: a fixed column that never elides and never moves on a pick.
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(1, self.table.fontMetrics().horizontalAdvance("0000-00-00") + 16)
        self.table.horizontalHeaderItem(len(COLUMNS) - 1).setToolTip(NAIVE_TIP)
        # Room for every header and a 5-digit price in the stretched columns: nothing is cut short.
        widest = max(header.fontMetrics().horizontalAdvance(COLUMNS[-1]),
                     self.table.fontMetrics().horizontalAdvance("99,999.99")) + 16
        self.table.setMinimumWidth(widest * (len(COLUMNS) - 2) + header.sectionSize(1)
                                   + header.fontMetrics().horizontalAdvance("h") + 32)
        self.table_title = QLabel()
        fixed_lines(self.table_title, 2)  # the title's length changes on a pick; its height must not
        self.evaluation = EvaluationView(store, with_button=True)
        self.reliability = ReliabilityPlot(palette)
        self._layout()
        self.model.currentIndexChanged.connect(self._on_model)
        self.dataset.currentIndexChanged.connect(self._on_dataset)
        self.latest_button.clicked.connect(lambda: self.pick(None))
        self.chart.scene().sigMouseClicked.connect(self._on_click)
        self.evaluation.reported.connect(self._show_reliability)
        self.evaluation.instrument.currentIndexChanged.connect(self._show_reliability)
        self.refresh()

    def _build_items(self) -> None:
        p, plot = self.palette_, self.chart.price_plot
        brush = pg.mkBrush(p.accent + FAN_ALPHA)
        self.fan: dict[str, tuple[pg.PlotCurveItem, pg.PlotCurveItem]] = {}  # band -> (lower, upper) edges
        for band in BANDS:  # edges stay off the plot: only the fill between them is drawn
            lower, upper = pg.PlotCurveItem(), pg.PlotCurveItem()
            plot.addItem(pg.FillBetweenItem(lower, upper, brush=brush))
            self.fan[band] = (lower, upper)
        fan_sample = pg.BarGraphItem(x=[], height=[], width=1, brush=brush, pen=None)  # the legend's swatch
        self.latest_curve = plot.plot(pen=pg.mkPen(p.accent, width=2), symbol="o", symbolSize=5,
                                      symbolBrush=p.accent, symbolPen=None)
        self.picked_curve = plot.plot(pen=pg.mkPen(p.series[1], width=2), symbol="o", symbolSize=5,
                                      symbolBrush=p.series[1], symbolPen=None)
        self.actual_curve = plot.plot(pen=pg.mkPen(p.text, width=1, style=Qt.PenStyle.DashLine), symbol="x",
                                      symbolSize=7, symbolBrush=p.text, symbolPen=pg.mkPen(p.text))
        self.picked_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(p.series[1], width=1))
        self.picked_line.setVisible(False)
        plot.addItem(self.picked_line, ignoreBounds=True)
        legend = plot.addLegend(offset=(10, 10), brush=pg.mkBrush(p.base + "d0"))
        for curve, name in ((self.latest_curve, "forecast from the latest bar"),
                            (self.picked_curve, "forecast from the picked day"),
                            (self.actual_curve, "actual closes"), (fan_sample, "50 / 80 / 90 % bands")):
            legend.addItem(curve, name)

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model, 2)
        top.addWidget(QLabel("Dataset"))
        top.addWidget(self.dataset, 1)
        top.addWidget(self.latest_button)
        side = column(self.table_title, (self.table, 1), (self.evaluation, 1), self.reliability)
        panel_layout(self, top, self.status, body=split(self.chart, side, [900, 420]))

    def chart_widget(self) -> QWidget:
        return self.chart

    # --- selection ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the finished price runs and the datasets, keeping the current choices."""
        run, source = self.model.currentData(), self.dataset.currentData()
        for box in (self.model, self.dataset):
            box.blockSignals(True)
            box.clear()
        for record in self.store.list_runs(kind="price", status="finished"):
            self.model.addItem(f"{record['run_id']} · {record['dataset']}", record["run_id"])
        for run_id, (label, _path, _note) in self._fallbacks.items():
            self.model.addItem(label, run_id)
        for label, value in self._sources():
            self.dataset.addItem(label, value)
        for box, value in ((self.model, run), (self.dataset, source)):
            box.setCurrentIndex(max(0, box.findData(value)))
            box.blockSignals(False)
        if self.model.count() == 0:
            self.status.setText("No finished price run yet: train one (Run ▸ Train…, Ctrl+N).")
        if (self.model.currentData(), self.dataset.currentData()) != (run, source):
            self._show()  # a new choice only: a refresh after some other job keeps the picked day

    def set_model(self, run_id: str) -> None:
        """Select a price run (opened from the history); its first training dataset comes with it."""
        if self.model.findData(run_id) < 0:
            self.refresh()
        if self.model.findData(run_id) < 0 and not self._add_fallback(run_id):
            return
        record = self.store.get_run(run_id)
        trained_on = (record or {}).get("config", {}).get("sources", [])
        if trained_on and self.dataset.findData(trained_on[0]) >= 0:
            self.dataset.blockSignals(True)
            self.dataset.setCurrentIndex(self.dataset.findData(trained_on[0]))
            self.dataset.blockSignals(False)
        self.model.setCurrentIndex(self.model.findData(run_id))
        self._show()
        if run_id in self._fallbacks:
            self._say(self._fallbacks[run_id][2])

    def _add_fallback(self, run_id: str) -> bool:
        """List a run that did not finish by its last checkpoint, clearly labelled; False (and the
        reason said) when it saved none."""
        record = self.store.get_run(run_id) or {}
        status = record.get("status", "not in the history")
        last = self.store.checkpoint(run_id, best=True) or self.store.checkpoint(run_id, best=False)
        if last is None:
            self._say(f"Run {run_id} ({status}) saved no checkpoint before it stopped, so there is no "
                      "network to forecast with. Resume it from the History or train a new run.")
            return False
        kind = f"{'best' if last['is_best'] else 'last'} checkpoint (step {last['step']})"
        label = f"{run_id} · {record.get('dataset', '')} · {status} · {kind}"
        note = f"Run {run_id} did not finish ({status}): showing its {kind}" + (
            "." if last["is_best"] else "; it stopped before any best checkpoint, so this model is not validated.")
        self._fallbacks[run_id] = (label, last["path"], note)
        self.model.addItem(label, run_id)
        return True

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.message.emit(text)

    @Slot()
    def _on_model(self) -> None:
        self._show()

    @Slot()
    def _on_dataset(self) -> None:
        self._show()

    def loaded(self) -> LoadedPriceModel | None:
        """The selected run's network, loaded once (weights only) and cached."""
        run_id = self.model.currentData()
        if run_id and run_id not in self._models:
            QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                self._models[run_id] = load_price_model(self._model_ref(), self.store)
            finally:
                QGuiApplication.restoreOverrideCursor()
        return self._models.get(run_id)

    def _model_ref(self) -> str | None:
        """The selected run id, or the checkpoint file of a run listed by its last checkpoint."""
        run_id = self.model.currentData()
        return self._fallbacks[run_id][1] if run_id in self._fallbacks else run_id

    def _windows_for(self, loaded: LoadedPriceModel, source: str) -> WindowSet:
        """The dataset imported as the model was trained (adjusted or not), windowed once."""
        cfg = loaded.model_cfg
        key = (source, loaded.data_cfg.adjust, cfg.window, cfg.horizon)
        if key not in self._windows:
            self._windows[key] = model_windows(loaded, load_bars_as_trained(loaded, source))
        return self._windows[key]

    # --- forecasting --------------------------------------------------------------------------

    def _show(self) -> None:
        """Chart the dataset and the latest forecast; a picked day is forgotten (other dates)."""
        source = self.dataset.currentData()
        if source is None:
            return
        self.evaluation.set_request(self._model_ref(), [source])
        self._show_reliability()
        try:
            loaded = self.loaded()
            bars = self._bars(source)
            self.ws = self._windows_for(loaded, source) if loaded else None
        except Exception as error:  # a bad checkpoint or file: say so, keep the panel usable
            self.status.setText(f"Cannot forecast: {error}")
            self.ws = None
            bars = None
        if bars is not None:
            self._chart_bars(bars)
        self.latest = forecast(loaded, self.ws) if self.ws is not None else None
        self._draw_path(self.latest_curve, self.latest, len(self.ws.dates) - 1 if self.ws else None)
        self.pick(None)
        if self.latest:
            self.status.setText(f"Forecast from the latest bar ({self.latest.asof}). Click an earlier day "
                                "to compare a forecast with what happened.")

    def _chart_bars(self, bars: BarTable) -> None:
        """Candles with room on the right for the path beyond the last bar."""
        self.chart.set_bars(bars.frame, bars.instrument)
        n, room = len(bars.frame), FUTURE_BARS + 2
        for plot in (self.chart.price_plot, self.chart.volume_plot):
            plot.setLimits(xMax=n + room)
        self.chart.show_range(n - VISIBLE_BARS, n + room)

    def pick(self, index: int | None) -> None:
        """Forecast from bar `index` (None: back to the latest bar) and fill the table."""
        ws = self.ws
        self.picked, self.picked_index = None, None
        if ws is not None and index is not None:
            if not ws.window - 1 <= index < len(ws.dates):
                self.status.setText(f"{ws.instrument}: a forecast needs {ws.window} days of history; the "
                                    f"first day with enough is {ws.dates[ws.window - 1]:%Y-%m-%d}.")
            else:
                self.picked = forecast(self.loaded(), ws, f"{ws.dates[index]:%Y-%m-%d}")
                self.picked_index = index
                self.day_picked.emit(self._model_ref(), self.dataset.currentData(), self.picked.asof)
        self._draw_path(self.picked_curve, self.picked, self.picked_index)
        self.picked_line.setVisible(self.picked is not None)
        if self.picked is not None:
            self.picked_line.setPos(self.picked_index)
        self._fill_table()

    def _draw_path(self, curve: pg.PlotDataItem, fc: Forecast | None, index: int | None) -> None:
        """The path from the close of day `index` through the 7 predicted closes (x = bar index)."""
        if fc is None or index is None:
            curve.setData([], [])
            return
        x = index + np.arange(len(fc.prices) + 1, dtype=float)
        curve.setData(x, np.r_[self.ws.close[index], fc.prices])

    def _draw_fan(self, fc: Forecast | None, index: int | None) -> None:
        """The bands of forecast `fc` from the close of day `index`, into the edges made once (empty
        for a point head, which forecasts no quantiles)."""
        for band, (lower, upper) in self.fan.items():
            levels = [f"{level:g}" for level in BANDS[band]]
            if fc is None or index is None or not all(level in fc.quantiles for level in levels):
                lower.setData([], [])
                upper.setData([], [])
                continue
            x = index + np.arange(len(fc.prices) + 1, dtype=float)
            for edge, level in zip((lower, upper), levels):
                edge.setData(x, np.r_[self.ws.close[index], fc.quantiles[level]])

    @Slot()
    def _show_reliability(self) -> None:
        self.reliability.show_rows(self.evaluation.rows())

    def _fill_table(self) -> None:
        ws, fc = self.ws, self.picked or self.latest
        index = self.picked_index if self.picked is not None else (len(ws.dates) - 1 if ws else None)
        self.actual_curve.setData([], [])
        self._draw_fan(fc, index)
        if fc is None:
            self.table_title.setText("No forecast")
            self.table.clearContents()
            return
        days = index + np.arange(1, len(fc.prices) + 1)
        known = days < len(ws.dates)
        actual = np.where(known, ws.close[np.minimum(days, len(ws.dates) - 1)], np.nan)
        dates = [f"{ws.dates[d]:%Y-%m-%d}" if k else fc.dates[h] for h, (d, k) in enumerate(zip(days, known))]
        predicted = np.asarray(fc.prices)
        self.errors = (predicted - actual) / actual
        self.naive_errors = (ws.close[index] - actual) / actual  # "tomorrow = today" for every horizon
        if known.any():
            self.actual_curve.setData(np.r_[index, days[known]].astype(float),
                                      np.r_[ws.close[index], actual[known]])
        where = "picked day" if self.picked is not None else "latest bar"
        mae = np.nanmean(np.abs(self.errors)) if known.any() else np.nan
        naive = np.nanmean(np.abs(self.naive_errors)) if known.any() else np.nan
        self.table_title.setText(f"<b>Forecast from {fc.asof}</b> ({where}, close {ws.close[index]:,.2f})"
                                 + (f" · mean abs error {mae:.2%}, naive {naive:.2%}" if np.isfinite(mae) else "")
                                 + (" · <b>excess over the universe's mean</b>: closes if the universe is flat"
                                    if fc.target == "excess" else ""))
        for h in range(len(predicted)):
            cells = [str(h + 1), dates[h], f"{predicted[h]:,.2f}", f"{predicted[h] / ws.close[index] - 1:+.2%}",
                     f"{actual[h]:,.2f}" if known[h] else "—", f"{self.errors[h]:+.2%}" if known[h] else "—",
                     f"{self.naive_errors[h]:+.2%}" if known[h] else "—"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment((Qt.AlignmentFlag.AlignRight if c > 1 else Qt.AlignmentFlag.AlignLeft)
                                      | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(h, c, item)

    @Slot(object)
    def _on_click(self, event) -> None:
        plot = self.chart.price_plot
        if event.button() != Qt.MouseButton.LeftButton or not plot.sceneBoundingRect().contains(event.scenePos()):
            return
        self.pick(round(plot.vb.mapSceneToView(event.scenePos()).x()))

    def set_palette(self, palette: Palette) -> None:
        self.palette_ = palette
        self.chart.set_palette(palette)
        self.reliability.set_palette(palette)


class ReliabilityPlot(pg.PlotWidget):
    """Observed against nominal coverage of the 50/80/90 % bands at RELIABILITY_HORIZONS, from the
    evaluate report's rows: on the diagonal when the bands are calibrated, below it when too narrow."""

    def __init__(self, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("reliabilityPlot")
        self.setFixedHeight(190)
        self.setMenuEnabled(False)
        plot = self.getPlotItem()
        plot.hideButtons()
        plot.setMouseEnabled(x=False, y=False)
        plot.setTitle("Band coverage on the test period")
        plot.setLabel("bottom", "nominal")
        plot.setLabel("left", "observed")
        self.diagonal = plot.plot([0.4, 1.0], [0.4, 1.0])
        plot.addLegend(offset=(8, 4))
        self.points = {h: plot.plot(name=f"h = {h}") for h in RELIABILITY_HORIZONS}
        self.set_palette(palette)

    def show_rows(self, rows: list[dict]) -> None:
        """One point per band and horizon; none without a report or for a point head (no coverage)."""
        nominal = np.array([float(band) for band in BANDS])
        for h, curve in self.points.items():
            coverage = next((row.get("coverage") for row in rows if row["h"] == h), None) or {}
            observed = np.array([np.nan if coverage.get(band) is None else coverage[band] for band in BANDS])
            ok = np.isfinite(observed)
            curve.setData(nominal[ok], observed[ok])

    def set_palette(self, palette: Palette) -> None:
        self.setBackground(palette.base)
        style_axes(self.getPlotItem(), palette)
        self.diagonal.setPen(pg.mkPen(palette.text, width=1, style=Qt.PenStyle.DashLine))
        for colour, curve in zip(palette.series, self.points.values()):
            curve.setPen(pg.mkPen(colour, width=1))
            curve.setSymbol("o")
            curve.setSymbolBrush(colour)
            curve.setSymbolPen(None)


def fixed_lines(label: QLabel, lines: int) -> None:
    """A label whose text changes (on every pick) without moving anything: wrapped, `lines` high,
    and no say in the panel's width."""
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    label.setFixedHeight(label.fontMetrics().lineSpacing() * lines + 4)
