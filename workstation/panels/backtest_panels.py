"""What a backtest did: positions under the price, regimes behind it, equity against the baselines.

Every number shown comes from the backtest record the engine saved (its daily frame, metrics,
per-regime metrics and baselines); nothing here recomputes trading results. x is the bar index of
the backtest's days, as in the other charts, so panels line up with the DateAxis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from engine.data.io import BarTable
from engine.jobs.backtest import load_backtest_frame
from engine.regime import REGIME_NAMES
from engine.store import RunStore
from workstation.charts import Crosshair, PriceChart, date_plot, fast_curve, legend_row, link_x, style_axes
from workstation.panels.layout import column, panel_layout, split
from workstation.theme import REGIME_COLOURS, Palette

BASELINES = {"buy_and_hold": "Buy and hold", "constant_5": "Constant 5", "sma_crossover": "SMA crossover",
             "follow_forecast": "Follow the forecast", "vol_target": "Vol target 10%", "analytic": "Analytic"}
BASELINE_SERIES = {key: i + 1 for i, key in enumerate(BASELINES)}  # palette.series index: one hue each
LOG_YEARS, LOG_RANGE = 5.0, 3.0
BAND_STRENGTH = 0.16  # regime colour mixed into the background: opaque fills repaint fast
SIGNED_PERCENT = {"total_return", "cagr", "max_drawdown"}
PERCENT = {"volatility", "win_rate", "exposure"}
REGIME_COLUMNS = ("total_return", "cagr", "sharpe", "max_drawdown", "win_rate", "exposure")
METRIC_ROWS = (("total_return", "Total return"), ("cagr", "CAGR"), ("volatility", "Volatility"),
               ("sharpe", "Sharpe"), ("sortino", "Sortino"), ("calmar", "Calmar"),
               ("max_drawdown", "Max drawdown"), ("information_ratio", "Information ratio (vs buy and hold, no costs)"),
               ("win_rate", "Win rate"), ("turnover", "Turnover (x/yr)"), ("exposure", "Exposure"))


@dataclass
class BacktestView:
    """A recorded backtest ready to draw: the record, its daily frame and the bars of its days."""

    backtest_id: str
    record: dict
    frame: pd.DataFrame  # load_backtest_frame
    bars: pd.DataFrame  # open high low close [volume] on the frame's dates
    market: str = "unknown"  # of the dataset: which colour means up

    @property
    def title(self) -> str:
        config = self.record["config"]
        mark = " · in-sample" if config.get("in_sample") else ""  # before the model's test start
        return f"{config.get('instrument', self.record['dataset'])} · {config['start']} → {config['end']}{mark}"


def load_view(store: RunStore, backtest_id: str, bars: Callable[[str], BarTable]) -> BacktestView:
    """Read a backtest from the history; candles come from its dataset when it can still be read."""
    record = store.get_backtest(backtest_id)
    if record is None:
        raise ValueError(f"no backtest {backtest_id!r} in {store.path}")
    frame = load_backtest_frame(record)
    try:
        table = bars(record["dataset"])
        ohlc, market = table.frame.reindex(frame.index), table.market
    except (OSError, ValueError):  # the imported file moved: draw closes as flat candles
        ohlc, market = pd.DataFrame({k: frame["close"] for k in ("open", "high", "low", "close")}), "unknown"
    return BacktestView(backtest_id, record, frame, ohlc, market)


def format_metric(key: str, value) -> str:
    """Undefined ratios are None in the engine: shown as n/a, never as 0."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if key in SIGNED_PERCENT:
        return f"{value:+.2%}"
    return f"{value:.1%}" if key in PERCENT else f"{value:.2f}"


def drawdown_text(metrics: dict) -> str:
    text = format_metric("max_drawdown", metrics.get("max_drawdown"))
    if metrics.get("max_drawdown_start"):
        text += f"  ({metrics['max_drawdown_start']} → {metrics['max_drawdown_end']})"
    return text


def blend(colour: str, background: str, strength: float) -> QColor:
    fg, bg = QColor(colour), QColor(background)
    mix = [round(a * strength + b * (1 - strength)) for a, b in
           zip(fg.getRgb()[:3], bg.getRgb()[:3])]
    return QColor(*mix)


def regime_colours(palette: Palette) -> dict[str, str]:
    """Neutral hues of their own: a bull band is not a rising candle's colour in either convention."""
    return dict(REGIME_COLOURS)


def regime_legend(palette: Palette) -> str:
    colours = regime_colours(palette)
    return "&nbsp;&nbsp;".join(f"<span style='color:{colours[name]}'>■</span> {name}"
                               for name in reversed(REGIME_NAMES))


class RegimeBands(pg.ImageItem):
    """Full-height coloured bands behind a plot: one pixel per day in its regime's colour, stretched
    to the view's height whenever the view moves, so zoom and log scale need no rebuild (a path of
    a thousand rectangles took a second to fill). Add with ignoreBounds=True."""

    def __init__(self) -> None:
        super().__init__(axisOrder="row-major")
        self.setZValue(-100)
        self.labels = np.array([], dtype=object)

    def set_data(self, labels: np.ndarray, colours: dict[str, str], background: str) -> None:
        self.labels = np.asarray(labels, dtype=object)
        rgba = np.zeros((1, len(self.labels), 4), dtype=np.uint8)  # unknown regime: transparent
        for name, colour in colours.items():
            rgba[0, self.labels == name] = blend(colour, background, BAND_STRENGTH).getRgb()
        self.setImage(rgba, autoLevels=False)
        self.viewRangeChanged()

    def viewRangeChanged(self) -> None:
        view = self.getViewBox()
        if view is None or not len(self.labels):
            return
        (_, _), (low, high) = view.viewRange()
        self.setRect(QRectF(-0.5, low, float(len(self.labels)), high - low))


def wants_log(frame: pd.DataFrame, columns: list[str]) -> bool:
    """Log equity by default over a long span (more than LOG_YEARS) or a wide range (over LOG_RANGE x):
    there a linear axis flattens the early years into a line along the bottom."""
    years = (frame.index[-1] - frame.index[0]).days / 365.25 if len(frame) else 0.0
    values = frame[columns].to_numpy(float)
    values = values[np.isfinite(values) & (values > 0)]
    return bool(years > LOG_YEARS or (values.size > 0 and values.max() / values.min() > LOG_RANGE))


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)


class _BacktestPanel(QWidget):
    """Common frame: a title, an empty-state hint, and redraw on theme change."""

    HINT = "No backtest shown yet: Run ▸ Backtest… (Ctrl+B), or open one from the History panel."

    def __init__(self, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.palette_ = palette
        self.view: BacktestView | None = None
        self.title = QLabel(self.HINT)
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)

    def show_backtest(self, view: BacktestView) -> None:
        self.view = view
        self.title.setText(f"<b>{view.title}</b> &nbsp; <span style='color:{self.palette_.muted}'>"
                           f"{view.backtest_id} · {view.record['config'].get('kind', '')} "
                           f"{view.record['run_id'] or view.record['config'].get('source', '')}</span>")
        self.legend.setText(regime_legend(self.palette_))
        self._draw()

    def set_palette(self, palette: Palette) -> None:
        self.palette_ = palette
        if self.view is not None:
            self.show_backtest(self.view)

    def _draw(self) -> None:
        raise NotImplementedError


class PositionsPanel(_BacktestPanel):
    """Candles with regime bands and position-change marks; the daily position 0..10 below them,
    on the same x (linked zoom, pan and crosshair); metrics per regime beside. A click picks a day."""

    day_picked = Signal(str, str, str)  # model ref, dataset, YYYY-MM-DD: the Explain panel follows it

    def __init__(self, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(palette, parent)
        self.setObjectName("positionsPanel")
        self.chart = PriceChart(palette)
        self.position_plot = date_plot(pd.DatetimeIndex([]))
        self.chart.addItem(self.position_plot, row=3, col=0)
        self.chart.ci.layout.setRowStretchFactor(3, 2)
        self.chart.price_plot.getAxis("bottom").setStyle(showValues=False)
        self.chart.volume_plot.getAxis("bottom").setStyle(showValues=False)
        self._setup_position_plot()
        self.bands = RegimeBands()
        self.chart.price_plot.addItem(self.bands, ignoreBounds=True)
        self.buys = pg.ScatterPlotItem(symbol="t1", size=9, pen=None)
        self.sells = pg.ScatterPlotItem(symbol="t", size=9, pen=None)
        for marks in (self.buys, self.sells):
            self.chart.price_plot.addItem(marks, ignoreBounds=True)
        self.position_curve = self.position_plot.plot(stepMode="center", fillLevel=0)
        self.readout = QLabel()
        self.regime_table = _table(["Regime", "Return", "CAGR", "Sharpe", "Max DD", "Win rate", "Exposure"])
        self.regime_table.setToolTip("Backtest metrics over the days each regime was known when the "
                                     "position was set (causal labels)")
        self.chart.hovered.connect(self._show_position)
        self.chart.scene().sigMouseClicked.connect(self._on_click)
        self._layout()

    def _setup_position_plot(self) -> None:
        plot = self.position_plot
        plot.setMouseEnabled(x=True, y=False)
        plot.setYRange(-1, 11, padding=0)
        plot.getAxis("left").setTicks([[(v, str(v)) for v in (0, 5, 10)], []])
        plot.getAxis("left").setWidth(64)
        plot.setLabel("left", "Position")
        plot.hideButtons()
        style_axes(plot, self.palette_)
        link_x([self.chart.price_plot, self.position_plot])
        self.chart.crosshair.add_plot(plot)  # hovering the positions moves the lines on the candles too

    def _layout(self) -> None:
        self.regime_side = column(QLabel("Metrics per regime"), self.regime_table)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.legend)
        panel_layout(self, top, self.readout, body=split(self.chart, self.regime_side, [880, 460]))

    def chart_widget(self) -> QWidget:
        return self.chart

    def _draw(self) -> None:
        view, p = self.view, self.palette_
        frame = view.frame
        self.chart.set_bars(view.bars, view.record["config"].get("instrument", ""), view.market)
        self.chart.show_range(-0.5, len(frame) - 0.5)
        self.position_plot.getAxis("bottom").set_dates(frame.index)
        self.position_plot.setLimits(xMin=-2, xMax=len(frame) + 2, minXRange=10)
        position = frame["position"].to_numpy(float)
        self.position_curve.setData(np.arange(len(frame) + 1) - 0.5, position, stepMode="center",
                                    fillLevel=0, pen=pg.mkPen(p.accent, width=1.5),
                                    brush=blend(p.accent, p.base, 0.35))
        self.bands.set_data(frame["regime"].to_numpy(), regime_colours(p), p.base)
        change = np.diff(position, prepend=0.0)
        x = np.arange(len(frame), dtype=float)
        low, high = view.bars["low"].to_numpy(float), view.bars["high"].to_numpy(float)
        up, down = change > 0, change < 0
        up_colour, down_colour = p.colours(view.market)
        self.buys.setData(x[up], low[up], brush=pg.mkBrush(up_colour))
        self.sells.setData(x[down], high[down], brush=pg.mkBrush(down_colour))
        per_regime = view.record["metrics"].get("per_regime", {})
        _fill(self.regime_table, [[name] + [format_metric(k, m.get(k)) for k in REGIME_COLUMNS]
                                  for name in reversed(REGIME_NAMES) if (m := per_regime.get(name))])
        self.regime_side.setMinimumWidth(self.regime_table.horizontalHeader().length() + 8)  # no scroll bar
        self._show_position(len(frame) - 1)

    @Slot(int)
    def _show_position(self, index: int) -> None:
        if self.view is None or not 0 <= index < len(self.view.frame):
            return
        row = self.view.frame.iloc[index]
        regime = row["regime"] or "unknown"
        self.readout.setText(f"{self.view.frame.index[index]:%Y-%m-%d}   position {int(row['position'])}/10   "
                             f"regime {regime}   strategy equity {row['strategy_equity']:.4f}")


    @Slot(object)
    def _on_click(self, event) -> None:
        view, plot = self.view, self.chart.price_plot
        if view is None or event.button() != Qt.MouseButton.LeftButton:
            return
        index = round(plot.vb.mapSceneToView(event.scenePos()).x())
        source = view.record["run_id"] or view.record["config"].get("source", "")
        if 0 <= index < len(view.frame) and source:
            self.day_picked.emit(source, view.record["dataset"], f"{view.frame.index[index]:%Y-%m-%d}")


class EquityPanel(_BacktestPanel):
    """Strategy equity against the baselines over regime bands, the drawdown below, metrics beside."""

    def __init__(self, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(palette, parent)
        self.setObjectName("equityPanel")
        self.plots = pg.GraphicsLayoutWidget()
        self.equity_plot = date_plot(pd.DatetimeIndex([]))
        self.drawdown_plot = date_plot(pd.DatetimeIndex([]))
        self.plots.addItem(self.equity_plot, row=1, col=0)
        self.plots.addItem(self.drawdown_plot, row=2, col=0)
        self.plots.ci.layout.setRowStretchFactor(1, 3)
        self.plots.ci.layout.setRowStretchFactor(2, 1)
        for plot in (self.equity_plot, self.drawdown_plot):
            plot.setMouseEnabled(x=True, y=False)
            plot.getAxis("left").setWidth(64)
            plot.hideButtons()
            style_axes(plot, palette)
        self.equity_plot.getAxis("bottom").setStyle(showValues=False)
        self.equity_plot.setLabel("left", "Equity")
        self.drawdown_plot.setLabel("left", "Drawdown %")
        link_x([self.equity_plot, self.drawdown_plot])
        self.bands = RegimeBands()
        self.equity_plot.addItem(self.bands, ignoreBounds=True)
        self.legend_item = legend_row(self.plots.ci, self.equity_plot, 0, columns=len(BASELINES) + 1)
        self.strategy_curve = fast_curve(self.equity_plot, palette.accent, 2, "Strategy")
        self.baseline_curves = {key: fast_curve(self.equity_plot, palette.series[BASELINE_SERIES[key]], 1, name)
                                for key, name in BASELINES.items()}
        self.drawdown_curve = fast_curve(self.drawdown_plot, palette.down)
        self.drawdown_curve.setFillLevel(0)
        self.crosshair = Crosshair([self.equity_plot, self.drawdown_plot], palette.muted)
        self.crosshair.moved.connect(self._show_day)
        self.log_scale = QCheckBox("Log scale")
        self.log_scale.setToolTip("Equity on a logarithmic axis: equal moves in percent look equal")
        self.log_scale.toggled.connect(lambda on: self.equity_plot.setLogMode(y=on))
        self.readout = QLabel()
        self.metrics_table = _table(["Metric", "Strategy", *BASELINES.values()])
        self._layout()

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.legend)
        top.addSpacing(12)
        top.addWidget(self.log_scale)
        body = split(self.plots, self.metrics_table, [560, 280], orientation=Qt.Orientation.Vertical)
        panel_layout(self, top, self.readout, body=body)

    def chart_widget(self) -> QWidget:
        return self.plots

    def _draw(self) -> None:
        view, p = self.view, self.palette_
        frame = view.frame
        x = np.arange(len(frame), dtype=float)
        for plot in (self.equity_plot, self.drawdown_plot):
            plot.getAxis("bottom").set_dates(frame.index)
            plot.setLimits(xMin=-2, xMax=len(frame) + 2, minXRange=10)
        self.strategy_curve.setData(x, frame["strategy_equity"].to_numpy(float))
        for key, curve in self.baseline_curves.items():
            column = f"{key}_equity"
            shown = column in frame
            curve.setData(*((x, frame[column].to_numpy(float)) if shown else ([], [])))
            self._set_legend_visible(curve, shown)
        self.drawdown_curve.setData(x, frame["drawdown"].to_numpy(float) * 100)
        down = p.colours(view.market)[1]
        self.drawdown_curve.setPen(pg.mkPen(down))
        self.drawdown_curve.setBrush(blend(down, p.base, 0.45))
        self.bands.set_data(frame["regime"].to_numpy(), regime_colours(p), p.base)
        self.log_scale.setChecked(wants_log(frame, [c for c in frame if c.endswith("_equity")]))
        self.equity_plot.setXRange(-0.5, len(frame) - 0.5, padding=0.01)
        self.equity_plot.enableAutoRange(y=True)
        self.drawdown_plot.enableAutoRange(y=True)
        self._fill_metrics()
        self._show_day(len(frame) - 1)

    def _set_legend_visible(self, curve: pg.PlotDataItem, shown: bool) -> None:
        """A baseline missing from this backtest (no forecast) leaves the legend too."""
        self.legend_item.removeItem(curve)
        if shown:
            self.legend_item.addItem(curve, curve.name())

    def _fill_metrics(self) -> None:
        record = self.view.record
        columns = [record["metrics"]] + [record["baselines"].get(key, {}) for key in BASELINES]
        for index, key in enumerate(BASELINES, start=2):  # a baseline this backtest lacks: no column
            self.metrics_table.setColumnHidden(index, key not in record["baselines"])
        _fill(self.metrics_table, [[label] + [drawdown_text(m) if key == "max_drawdown" else
                                              format_metric(key, m.get(key)) for m in columns]
                                   for key, label in METRIC_ROWS])

    @Slot(int)
    def _show_day(self, index: int) -> None:
        if self.view is None or not 0 <= index < len(self.view.frame):
            return
        row = self.view.frame.iloc[index]
        parts = [f"{self.view.frame.index[index]:%Y-%m-%d}", f"strategy {row['strategy_equity']:.4f}"]
        parts += [f"{name.lower()} {row[f'{key}_equity']:.4f}" for key, name in BASELINES.items()
                  if f"{key}_equity" in row]
        parts.append(f"drawdown {row['drawdown']:.2%}")
        self.readout.setText("   ".join(parts))
