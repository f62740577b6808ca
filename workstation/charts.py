"""Reusable market charts: candles recorded once, a trading-day axis, crosshair, volume, zoom and pan.

x is the bar index everywhere, so weekends and holidays take no space; the DateAxis turns indices
back into dates. Candles are recorded into one QPicture per chunk of bars the first time the chunk
is painted, and only the chunks in view are replayed, so panning over the 8,455 SSE bars never
rebuilds geometry.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QKeyEvent, QPainter, QPicture
from PySide6.QtWidgets import QGraphicsItem

from workstation.theme import Palette

DEFAULT_VISIBLE_BARS = 250


class DateAxis(pg.AxisItem):
    """Axis over bar indices that labels trading dates at day, month or year boundaries."""

    _DAY_STEPS = (1, 2, 5, 10)
    _MONTH_STEPS = (1, 2, 3, 6)
    _YEAR_STEPS = (1, 2, 5, 10, 20)

    def __init__(self, orientation: str = "bottom", **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self.set_dates(pd.DatetimeIndex([]))
        self._format = "%Y-%m-%d"

    def set_dates(self, dates: pd.DatetimeIndex) -> None:
        self.dates = pd.DatetimeIndex(dates)
        months = self.dates.year * 12 + self.dates.month - 1
        self._month_starts = _period_starts(np.asarray(months))
        self._year_starts = _period_starts(np.asarray(self.dates.year))
        self.picture = None
        self.update()

    def tickValues(self, minVal: float, maxVal: float, size: float):
        n = len(self.dates)
        if n == 0:
            return []
        lo, hi = max(0, int(np.ceil(minVal))), min(n - 1, int(np.floor(maxVal)))
        max_ticks = max(2, int(size / 80))
        for ticks, fmt in self._candidates(lo, hi):
            if len(ticks) <= max_ticks:
                self._format = fmt
                return [(1.0, [float(t) for t in ticks])]
        return []

    def _candidates(self, lo: int, hi: int):
        """Tick sets from finest to coarsest, each with the label format that suits it."""
        for k in self._DAY_STEPS:
            yield np.arange(lo + (-lo) % k, hi + 1, k), "%m-%d"
        starts = self._month_starts[(self._month_starts >= lo) & (self._month_starts <= hi)]
        month_of_year = self.dates.month[starts] - 1
        for k in self._MONTH_STEPS:
            yield starts[np.asarray(month_of_year) % k == 0], "%Y-%m"
        starts = self._year_starts[(self._year_starts >= lo) & (self._year_starts <= hi)]
        for k in self._YEAR_STEPS:
            yield starts[np.asarray(self.dates.year[starts]) % k == 0], "%Y"

    def tickStrings(self, values, scale, spacing):
        n = len(self.dates)
        return [self.dates[int(v)].strftime(self._format) if 0 <= int(v) < n else "" for v in values]


class CompactAxis(pg.AxisItem):
    """Value axis with 1.2M / 3.4B labels instead of scientific notation (volumes)."""

    def tickStrings(self, values, scale, spacing):
        return [_compact(v * scale) for v in values]


def _period_starts(codes: np.ndarray) -> np.ndarray:
    """Indices where a period code (month or year) changes; the first bar starts no period."""
    return np.flatnonzero(np.diff(codes)) + 1


class CandleItem(pg.GraphicsObject):
    """OHLC candles at x = 0..n-1, recorded into one QPicture per chunk of bars the first time
    that chunk is painted, then replayed: opening on the latest year records two chunks, not all."""

    CHUNK = 256

    def __init__(self) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)
        self._pictures: list[QPicture | None] = []  # None: not painted yet
        self._ohlc: tuple[np.ndarray, ...] = ()
        self._colours = ("", "")
        self._bounds = QRectF()

    def set_data(self, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                 up: str, down: str) -> None:
        self.prepareGeometryChange()
        self._ohlc, self._colours = (o, h, lo, c), (up, down)
        self._pictures = [None] * -(-len(c) // self.CHUNK)
        finite_lo, finite_hi = np.nanmin(lo) if len(lo) else 0.0, np.nanmax(h) if len(h) else 1.0
        self._bounds = QRectF(-0.5, float(finite_lo), float(len(c)), float(finite_hi - finite_lo))
        self.update()

    def recorded(self) -> int:
        """How many chunks have been painted (and so recorded) since the last set_data."""
        return sum(p is not None for p in self._pictures)

    def _picture(self, chunk: int) -> QPicture:
        if self._pictures[chunk] is None:
            start = chunk * self.CHUNK
            part = (a[start:start + self.CHUNK] for a in self._ohlc)
            self._pictures[chunk] = self._record(start, *part, *self._colours)
        return self._pictures[chunk]

    @staticmethod
    def _record(start: int, o, h, lo, c, up: str, down: str) -> QPicture:
        picture = QPicture()
        painter = QPainter(picture)
        x = start + np.arange(len(c), dtype=float)
        rising = c >= o
        for mask, colour in ((rising, up), (~rising, down)):
            painter.setPen(pg.mkPen(colour))
            painter.setBrush(pg.mkBrush(colour))
            painter.drawPath(_wick_path(x[mask], lo[mask], h[mask]))
            painter.drawPath(_body_path(x[mask], o[mask], c[mask]))
        painter.end()
        return picture

    def paint(self, painter: QPainter, option, widget=None) -> None:
        exposed = option.exposedRect
        first = max(0, int((exposed.left() + 0.5) // self.CHUNK))
        last = min(len(self._pictures) - 1, int((exposed.right() + 0.5) // self.CHUNK))
        for chunk in range(first, last + 1):
            painter.drawPicture(0, 0, self._picture(chunk))

    def boundingRect(self) -> QRectF:
        return QRectF(self._bounds)


def _wick_path(x: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Vertical low-high segments as one path (built by numpy, no per-bar Python)."""
    xs = np.repeat(x, 2)
    ys = np.column_stack([lo, hi]).ravel()
    return pg.arrayToQPath(xs, ys, connect="pairs")


def _body_path(x: np.ndarray, o: np.ndarray, c: np.ndarray, half: float = 0.35):
    """Open-close rectangles as closed sub-paths of one path."""
    xs = np.column_stack([x - half, x + half, x + half, x - half, x - half]).ravel()
    ys = np.column_stack([o, o, c, c, o]).ravel()
    connect = np.ones(len(xs), dtype=bool)
    connect[4::5] = False  # break after each rectangle
    return pg.arrayToQPath(xs, ys, connect=connect)


class Crosshair(QObject):
    """Vertical line on every linked plot, horizontal on the one under the mouse; reports the bar
    index. Hovering any linked plot moves the lines on all of them."""

    moved = Signal(int)

    def __init__(self, plots: list[pg.PlotItem], colour: str) -> None:
        super().__init__()
        self._pen = pg.mkPen(colour, style=Qt.PenStyle.DashLine)
        self._plots: list[pg.PlotItem] = []
        self._vlines: list[pg.InfiniteLine] = []
        self._hlines: list[pg.InfiniteLine] = []
        self._scene = plots[0].scene()
        self._proxy = pg.SignalProxy(self._scene.sigMouseMoved, rateLimit=60, slot=self._on_mouse)
        for plot in plots:
            self.add_plot(plot)

    def add_plot(self, plot: pg.PlotItem) -> None:
        """Link one more plot of the same chart widget (one scene), on the same bar-index x."""
        if plot.scene() is not self._scene:
            raise ValueError("a crosshair links plots of one chart widget; add the plot to it first")
        v, h = (pg.InfiniteLine(angle=angle, movable=False, pen=self._pen) for angle in (90, 0))
        plot.addItem(v, ignoreBounds=True)
        plot.addItem(h, ignoreBounds=True)
        h.setVisible(False)
        self._plots.append(plot)
        self._vlines.append(v)
        self._hlines.append(h)

    def set_colour(self, colour: str) -> None:
        self._pen = pg.mkPen(colour, style=Qt.PenStyle.DashLine)
        for line in self._vlines + self._hlines:
            line.setPen(self._pen)

    def move_to(self, index: int) -> None:
        """Put the vertical lines on a bar (e.g. the latest when data is shown) without a mouse."""
        for vline in self._vlines:
            vline.setPos(index)

    def _on_mouse(self, args) -> None:
        pos: QPointF = args[0]
        for plot, hline in zip(self._plots, self._hlines):
            inside = plot.sceneBoundingRect().contains(pos)
            hline.setVisible(inside)
            if inside:
                point = plot.vb.mapSceneToView(pos)
                hline.setPos(point.y())
                index = round(point.x())
                self.move_to(index)
                self.moved.emit(index)


def link_x(plots: list[pg.PlotItem]) -> None:
    """Make every plot follow the first one's x range (zoom, pan, crosshair stay aligned)."""
    for plot in plots[1:]:
        plot.setXLink(plots[0])


def date_plot(dates: pd.DatetimeIndex, **kwargs) -> pg.PlotItem:
    """A PlotItem whose x axis is the trading-day axis for these dates."""
    axis = DateAxis("bottom")
    axis.set_dates(dates)
    return pg.PlotItem(axisItems={"bottom": axis, **kwargs.pop("axisItems", {})}, **kwargs)


def style_axes(plot: pg.PlotItem, palette: Palette, grid: bool = True) -> None:
    """Dim but opaque axes and grid: translucent grid lines made every repaint several times slower."""
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(pg.mkPen(palette.grid))
        axis.setTextPen(pg.mkPen(palette.muted))
    plot.showGrid(x=grid, y=grid, alpha=1.0)


def fast_curve(plot: pg.PlotItem, colour: str, width: float = 1.0, name: str | None = None) -> pg.PlotDataItem:
    """A line that stays smooth on long series: drawn only in view and peak-downsampled."""
    curve = plot.plot(pen=pg.mkPen(colour, width=width), name=name)
    curve.setClipToView(True)
    curve.setDownsampling(auto=True, method="peak")
    return curve


def legend_row(layout: pg.GraphicsLayout, plot: pg.PlotItem, row: int, columns: int = 4) -> pg.LegendItem:
    """A legend in its own layout row (above the plot's row), outside the data area: a legend inside
    the plot hid the end of any curve that ran under it. Named curves added to `plot` join it."""
    legend = pg.LegendItem(colCount=columns, frame=False, horSpacing=14)
    layout.addItem(legend, row=row, col=0)
    plot.legend = legend  # PlotItem.addItem/removeItem keep named items in plot.legend
    return legend


class LegendPlot(pg.GraphicsLayoutWidget):
    """One plot with its legend in a row above it (see legend_row); used like a small PlotWidget."""

    def __init__(self, title: str = "", columns: int = 2, **plot_kwargs) -> None:
        super().__init__()
        self.plot_item = pg.PlotItem(title=title, **plot_kwargs)
        self.addItem(self.plot_item, row=1, col=0)
        self.legend = legend_row(self.ci, self.plot_item, 0, columns)
        self.ci.layout.setRowStretchFactor(1, 1)

    def getPlotItem(self) -> pg.PlotItem:
        return self.plot_item

    def plot(self, *args, **kwargs) -> pg.PlotDataItem:
        return self.plot_item.plot(*args, **kwargs)

    def setLabel(self, *args, **kwargs) -> None:
        self.plot_item.setLabel(*args, **kwargs)


class ReadoutLabel(pg.LabelItem):
    """A one-line label that never widens its layout: pg.LabelItem makes its text's width the layout's
    minimum, so a long read-out (title, OHLC, change, volume) pushed the plots past the widget's right
    edge and hid the latest bars. Text that does not fit is clipped instead."""

    def __init__(self, **opts) -> None:
        super().__init__(**opts)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape)

    def updateMin(self) -> None:
        super().updateMin()
        self.setMinimumWidth(0)
        self._sizeHint[Qt.SizeHint.MinimumSize] = (0, self._sizeHint[Qt.SizeHint.MinimumSize][1])
        self.updateGeometry()


class PriceChart(pg.GraphicsLayoutWidget):
    """Candles + volume over trading days, a crosshair OHLCV read-out, mouse/keyboard zoom and pan.

    Keys: Left/Right pan, Up/+ zoom in, Down/- zoom out, Home shows every bar, End the latest.
    Part 2 panels draw on `price_plot` (forecasts, positions, bands) with the same x = bar index.
    """

    hovered = Signal(int)

    def __init__(self, palette: Palette, parent=None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.frame = pd.DataFrame()
        self.market = "unknown"
        self.log_y = False  # prices on a log10 axis (candles drawn in log10 units)
        self._palette = palette
        self.readout = ReadoutLabel(justify="left")
        self.addItem(self.readout, row=0, col=0)
        self.price_plot = date_plot(pd.DatetimeIndex([]))
        self.volume_plot = date_plot(pd.DatetimeIndex([]), axisItems={"left": CompactAxis("left")})
        self.price_plot.getAxis("bottom").setStyle(showValues=False)
        self.addItem(self.price_plot, row=1, col=0)
        self.addItem(self.volume_plot, row=2, col=0)
        self.ci.layout.setRowStretchFactor(1, 4)
        self.ci.layout.setRowStretchFactor(2, 1)
        for plot in (self.price_plot, self.volume_plot):
            plot.setMouseEnabled(x=True, y=False)
            style_axes(plot, palette)
            plot.getAxis("left").setWidth(64)
            plot.hideButtons()
        link_x([self.price_plot, self.volume_plot])
        self.candles = CandleItem()
        self.price_plot.addItem(self.candles)
        self.close_line = pg.PlotDataItem(connect="finite")  # close-only data (a wide table) has no candles
        self.price_plot.addItem(self.close_line)
        self._volume_items: list[pg.BarGraphItem] = []
        self.crosshair = Crosshair([self.price_plot, self.volume_plot], palette.muted)
        self.crosshair.moved.connect(self._show_readout)
        self.crosshair.moved.connect(self.hovered)
        self.price_plot.sigXRangeChanged.connect(self._fit_y)

    def set_bars(self, frame: pd.DataFrame, title: str = "", market: str = "unknown") -> None:
        """Show a canonical bar frame (DatetimeIndex; open high low close [volume]); the market
        (BarTable.market) picks which colour means up."""
        self.frame = frame
        self.title = title
        self.market = market
        for plot in (self.price_plot, self.volume_plot):
            plot.getAxis("bottom").set_dates(frame.index)
        self._draw()
        n = len(frame)
        self.price_plot.setLimits(xMin=-2, xMax=n + 2, minXRange=10)
        self.volume_plot.setLimits(xMin=-2, xMax=n + 2, minXRange=10)
        self.show_last(DEFAULT_VISIBLE_BARS)
        self.crosshair.move_to(n - 1)
        self._show_readout(n - 1)

    def set_palette(self, palette: Palette) -> None:
        self._palette = palette
        self.setBackground(palette.base)
        self.crosshair.set_colour(palette.muted)
        for plot in (self.price_plot, self.volume_plot):
            style_axes(plot, palette)
        if len(self.frame):
            self._draw()
            self._show_readout(len(self.frame) - 1)

    def _draw(self) -> None:
        f, (up, down) = self.frame, self.colours()
        o, h, lo, c = (f[k].to_numpy(float) for k in ("open", "high", "low", "close"))
        scale = _log10 if self.log_y else np.asarray
        if self.has_candles():
            self.candles.set_data(*(scale(a) for a in (o, h, lo, c)), up, down)
            self.close_line.setData([], [])
        else:
            none = np.empty(0)
            self.candles.set_data(none, none, none, none, up, down)
            self.close_line.setData(np.arange(len(c), dtype=float), scale(c), pen=pg.mkPen(self._palette.text))
        for item in self._volume_items:
            self.volume_plot.removeItem(item)
        volume = f["volume"].to_numpy(float) if "volume" in f else np.full(len(f), np.nan)
        x = np.arange(len(f), dtype=float)
        rising = c >= np.where(np.isnan(o), np.r_[np.nan, c[:-1]], o)  # no open: up means above yesterday
        self._volume_items = [pg.BarGraphItem(x=x[m], height=np.nan_to_num(volume[m]), width=0.7,
                                              brush=colour, pen=pg.mkPen(None))
                              for m, colour in ((rising, up), (~rising, down))]
        for item in self._volume_items:
            self.volume_plot.addItem(item)

    def has_candles(self) -> bool:
        """Whether the bars have an open, high and low anywhere; a close-only table draws a close line."""
        return all(k in self.frame and self.frame[k].notna().any() for k in ("open", "high", "low"))

    def set_log_y(self, on: bool) -> None:
        """Prices on a logarithmic axis: a decade of a long index reads as clearly as its first year.
        Candles are custom items (no setLogMode of their own), so they are redrawn in log10 units."""
        self.log_y = on
        self.price_plot.getAxis("left").setLogMode(False, on)
        if len(self.frame):
            self._draw()
            self._fit_y()

    def colours(self) -> tuple[str, str]:
        """(up, down) of the bars shown."""
        return self._palette.colours(self.market)

    def show_range(self, first: float, last: float) -> None:
        self.price_plot.setXRange(first, last, padding=0.01)

    def show_last(self, bars: int) -> None:
        n = len(self.frame)
        self.show_range(max(0, n - bars) - 0.5, n - 0.5)

    def visible_range(self) -> tuple[float, float]:
        return tuple(self.price_plot.vb.viewRange()[0])

    def _fit_y(self) -> None:
        """Fit price and volume to the bars in view (x-only navigation keeps candles readable)."""
        n = len(self.frame)
        if n == 0:
            return
        lo, hi = self.visible_range()
        a, b = max(0, int(np.floor(lo))), min(n, int(np.ceil(hi)) + 1)
        if a >= b:
            return
        view = self.frame.iloc[a:b]
        close = view["close"]
        low, high = view["low"].fillna(close).min(), view["high"].fillna(close).max()  # NaN when none
        if self.log_y:
            low, high = _log10(low), _log10(high)
        if np.isfinite(low) and np.isfinite(high):
            pad = (high - low) * 0.05 or abs(high) * 0.01 or 1.0
            self.price_plot.setYRange(low - pad, high + pad, padding=0)
        if "volume" in view and np.isfinite(view["volume"]).any():
            self.volume_plot.setYRange(0, float(np.nanmax(view["volume"].to_numpy())) * 1.05, padding=0)

    def _show_readout(self, index: int) -> None:
        if not 0 <= index < len(self.frame):
            return
        bar = self.frame.iloc[index]
        prev = self.frame["close"].iloc[index - 1] if index > 0 else np.nan
        change = bar["close"] / prev - 1 if np.isfinite(prev) and prev else np.nan
        up, down = self.colours()
        colour = up if change >= 0 else down
        parts = [f"<b>{getattr(self, 'title', '')}</b>", self.frame.index[index].strftime("%Y-%m-%d %a")]
        parts += [f"{k[0].upper()} {bar[k]:,.2f}" for k in ("open", "high", "low", "close") if np.isfinite(bar[k])]
        if np.isfinite(change):
            parts.append(f"<span style='color:{colour}'>{change:+.2%}</span>")
        if "volume" in bar and np.isfinite(bar["volume"]):
            parts.append(f"V {_compact(bar['volume'])}")
        self.readout.setText("&nbsp;&nbsp;".join(parts), color=self._palette.text, size="9pt")

    def keyPressEvent(self, event: QKeyEvent) -> None:
        lo, hi = self.visible_range()
        width, key = hi - lo, event.key()
        zoom = {Qt.Key.Key_Up: 0.8, Qt.Key.Key_Plus: 0.8, Qt.Key.Key_Equal: 0.8,
                Qt.Key.Key_Down: 1.25, Qt.Key.Key_Minus: 1.25}
        if key in zoom:
            centre, half = (lo + hi) / 2, width * zoom[key] / 2
            self.show_range(centre - half, centre + half)
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            shift = width * 0.1 * (-1 if key == Qt.Key.Key_Left else 1)
            self.price_plot.setXRange(lo + shift, hi + shift, padding=0)
        elif key == Qt.Key.Key_Home:
            self.show_range(-0.5, len(self.frame) - 0.5)
        elif key == Qt.Key.Key_End:
            self.show_last(DEFAULT_VISIBLE_BARS)
        else:
            super().keyPressEvent(event)


def _log10(values):
    """log10 of prices; non-positive prices (never in a valid import) become NaN, not warnings."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(values, dtype=float) > 0, np.log10(values), np.nan)


def _compact(value: float) -> str:
    """1234567 -> 1.23M: volumes span ten orders of magnitude across markets."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"
