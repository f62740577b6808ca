"""A recorded portfolio backtest: the book's weights over time, equity against the baselines, drawdown,
each name's contribution, and the risk model checked out of sample.

Everything drawn comes from the record engine/jobs/portfolio.py saved (daily frame, weights,
contributions, metrics); the panel only rearranges it: cumulative weights for the stacked area, the
20-day realised volatility of the recorded daily returns, and breaches as the recorded next-day return
below the VaR the risk model gave the evening before (the engine's Kupiec test counts the same days).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHeaderView, QLabel, QWidget

from engine.jobs.portfolio import load_portfolio_frames
from engine.store import RunStore
from workstation.charts import date_plot, fast_curve, legend_row, link_x, style_axes
from workstation.panels.backtest_panels import _fill, _table, blend, drawdown_text, format_metric
from workstation.panels.layout import column, panel_layout, split
from workstation.theme import Palette

BASELINES = {"equal_weight": "1/N", "inverse_vol": "Inverse vol", "momentum": "Momentum 12-1", "index": "Index"}
REALISED_DAYS = 20
ANNUAL = np.sqrt(252)
METRICS = (("total_return", "Total"), ("cagr", "CAGR"), ("sharpe", "Sharpe"), ("max_drawdown", "Max DD"),
           ("turnover", "Turns/yr"), ("average_holdings", "Names"))


class PortfolioPanel(QWidget):
    """Opens a portfolio backtest by id (show_backtest); plots are built once and refilled."""

    def __init__(self, store: RunStore, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("portfolioPanel")
        self.store, self.palette_ = store, palette
        self.record: dict | None = None
        self.daily = self.weights = None
        self.title = QLabel("Open a portfolio backtest from the History panel or run one from the backtest wizard.")
        self.title.setProperty("role", "title")
        self.plots = pg.GraphicsLayoutWidget()
        self.weights_plot, self.equity_plot, self.drawdown_plot, self.vol_plot, self.var_plot = (
            date_plot(pd.DatetimeIndex([])) for _ in range(5))
        rows = ((self.weights_plot, "Weights", 3), (self.equity_plot, "Equity", 3), (self.drawdown_plot, "DD %", 1),
                (self.vol_plot, "Vol % (ann.)", 2), (self.var_plot, "Return %", 2))
        row = 0
        for plot, label, stretch in rows:
            if plot is not self.weights_plot and plot is not self.drawdown_plot:
                legend_row(self.plots.ci, plot, row, columns=6)
                row += 1
            self.plots.addItem(plot, row=row, col=0)
            self.plots.ci.layout.setRowStretchFactor(row, stretch)
            row += 1
            plot.setLabel("left", label)
            plot.setMouseEnabled(x=True, y=False)
            plot.getAxis("left").setWidth(64)
            plot.hideButtons()
        link_x([self.weights_plot, self.equity_plot, self.drawdown_plot, self.vol_plot, self.var_plot])
        self.layers: list[pg.PlotDataItem] = []  # cumulative weight curves: [0] is the zero line
        self.fills: list[pg.FillBetweenItem] = []
        self.equity_curve = fast_curve(self.equity_plot, palette.accent, 2, "Portfolio")
        self.baseline_curves = {key: fast_curve(self.equity_plot, palette.series[i + 1], 1, name)
                                for i, (key, name) in enumerate(BASELINES.items())}
        self.drawdown_curve = fast_curve(self.drawdown_plot, palette.down)
        self.drawdown_curve.setFillLevel(0)
        self.predicted_curve = fast_curve(self.vol_plot, palette.accent, 1.5, "Predicted (risk model)")
        self.realised_curve = fast_curve(self.vol_plot, palette.series[1], 1, f"Realised ({REALISED_DAYS}-day)")
        self.return_curve = fast_curve(self.var_plot, palette.muted, 1, "Daily return")
        self.var_curve = fast_curve(self.var_plot, palette.warn, 1.5, "-VaR (covariance)")
        self.model_var_curve = fast_curve(self.var_plot, palette.series[2], 1, "-VaR (model quantiles)")
        self.breaches = pg.ScatterPlotItem(size=7, symbol="x", pen=pg.mkPen(palette.error, width=2),
                                           brush=pg.mkBrush(palette.error), name="Breach")
        self.var_plot.addItem(self.breaches)
        self.risk_text = QLabel()
        self.risk_text.setWordWrap(True)
        self.risk_text.setProperty("role", "muted")
        self.metrics_table = _table(["", *(label for _, label in METRICS)])  # a row per book: all fit side by side
        self.metrics_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.metrics_table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.metrics_table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.contribution_table = _table(["Instrument", "Contribution", "Avg weight", "Last weight"])
        self.contribution_table.setToolTip("Sum over the days of the weight held into a day times the name's "
                                           "return that day: before costs, not compounded")
        side = column(self.metrics_table, QLabel("Contribution by instrument (sum of w·r)"),
                      (self.contribution_table, 1), self.risk_text)
        panel_layout(self, self.title, body=split(self.plots, side, [860, 600]))
        self._style()

    def chart_widget(self) -> QWidget:
        return self.plots

    def set_palette(self, palette: Palette) -> None:
        self.palette_ = palette
        self._style()
        if self.record is not None:
            self._draw()

    def _style(self) -> None:
        p = self.palette_
        for plot in (self.weights_plot, self.equity_plot, self.drawdown_plot, self.vol_plot, self.var_plot):
            style_axes(plot, p, grid=plot is not self.weights_plot)  # grid lines over the fills read as noise
        self.equity_curve.setPen(pg.mkPen(p.accent, width=2))
        for i, curve in enumerate(self.baseline_curves.values()):
            curve.setPen(pg.mkPen(p.series[i + 1]))
        self.drawdown_curve.setPen(pg.mkPen(p.down))
        self.drawdown_curve.setBrush(blend(p.down, p.base, 0.45))

    def layer_colour(self, i: int) -> QColor:
        """A name's colour: the palette's hues, lighter on each pass through them."""
        series = self.palette_.series
        return blend(series[i % len(series)], self.palette_.base, 0.85 - 0.3 * (i // len(series) % 2))

    def show_backtest(self, backtest_id: str) -> None:
        """Read a portfolio backtest from the history and draw it (ValueError: not one, or unreadable)."""
        record = self.store.get_backtest(backtest_id)
        if record is None or record["config"].get("kind") != "portfolio":
            raise ValueError(f"{backtest_id} is not a portfolio backtest")
        self.daily, self.weights, self.contribution = load_portfolio_frames(record)
        self.record = record
        self._draw()

    def _ensure_layers(self, n: int) -> None:
        """One curve per cumulative sum and a fill between each pair, created the first time they are needed."""
        while len(self.layers) < n + 1:
            curve = pg.PlotDataItem(pen=pg.mkPen(None))
            self.weights_plot.addItem(curve)
            if self.layers:
                fill = pg.FillBetweenItem(self.layers[-1], curve)
                self.weights_plot.addItem(fill)
                self.fills.append(fill)
            self.layers.append(curve)

    def _draw(self) -> None:
        record, daily, weights = self.record, self.daily, self.weights
        x = np.arange(len(daily), dtype=float)
        for plot in (self.weights_plot, self.equity_plot, self.drawdown_plot, self.vol_plot, self.var_plot):
            plot.getAxis("bottom").set_dates(daily.index)
            plot.setLimits(xMin=-2, xMax=len(daily) + 2, minXRange=10)
        for plot in (self.weights_plot, self.equity_plot, self.drawdown_plot, self.vol_plot):
            plot.getAxis("bottom").setStyle(showValues=False)
        n = weights.shape[1]
        self._ensure_layers(n)
        stacked = np.column_stack([np.zeros(len(x)), np.cumsum(np.nan_to_num(weights.to_numpy()), axis=1)])
        for i, curve in enumerate(self.layers):
            curve.setData(x, stacked[:, min(i, n)])  # layers beyond this universe's size collapse onto the top
        for i, fill in enumerate(self.fills):
            fill.setBrush(self.layer_colour(i) if i < n else QColor(0, 0, 0, 0))
        self.weights_plot.setYRange(0, 1, padding=0.02)
        self.equity_curve.setData(x, daily["equity"].to_numpy())
        for key, curve in self.baseline_curves.items():
            curve.setData(x, daily[f"{key}_equity"].to_numpy())
        equity = daily["equity"]
        self.drawdown_curve.setData(x, (equity / equity.cummax() - 1.0).to_numpy() * 100)
        returns = daily["strategy_return"]
        realised = returns.rolling(REALISED_DAYS, min_periods=REALISED_DAYS).std() * ANNUAL * 100
        predicted = daily["predicted_volatility"].shift(1) * ANNUAL * 100  # told the evening before that day
        self.predicted_curve.setData(x, predicted.to_numpy())
        self.realised_curve.setData(x, realised.to_numpy())
        var = daily["var_covariance"].shift(1)
        breach = (returns < -var).to_numpy()
        self.return_curve.setData(x, returns.to_numpy() * 100)
        self.var_curve.setData(x, -var.to_numpy() * 100)
        self.breaches.setData(x[breach], returns.to_numpy()[breach] * 100)
        model = daily["var_model"].shift(1).to_numpy() * -100 if "var_model" in daily else []
        self.model_var_curve.setData(x[:len(model)], model)
        for plot in (self.equity_plot, self.drawdown_plot, self.vol_plot, self.var_plot):
            plot.enableAutoRange(y=True)
        self.equity_plot.setXRange(-0.5, len(x) - 0.5, padding=0.01)
        config = record["config"]
        fold = f" · walk-forward {len(config['walk_forward'])} folds" if config.get("walk_forward") else ""
        mark = " · in-sample" if config.get("in_sample") else ""
        self.title.setText(f"{record['dataset']} · {config['portfolio']['method']} · {config['start']} → "
                           f"{config['end']}{fold}{mark}")
        self._fill_tables(breach)

    def _fill_tables(self, breach: np.ndarray) -> None:
        record, weights = self.record, self.weights
        books = {"Portfolio": record["metrics"], **{name: record["baselines"].get(key, {})
                                                    for key, name in BASELINES.items()}}
        _fill(self.metrics_table, [[name] + [f"{m[key]:.1f}" if key == "average_holdings" and m.get(key) is not None
                                             else format_metric(key, m.get(key)) for key, _ in METRICS]
                                   for name, m in books.items()])
        self.metrics_table.setToolTip(f"Max drawdown of the portfolio: {drawdown_text(record['metrics'])}")
        rows = self.metrics_table
        rows.setFixedHeight(rows.horizontalHeader().height() + sum(rows.rowHeight(r) for r in range(rows.rowCount()))
                            + 2 * rows.frameWidth())
        order = self.contribution.sort_values(ascending=False).index
        _fill(self.contribution_table, [[name, f"{self.contribution[name]:+.2%}", f"{weights[name].mean():.1%}",
                                         f"{weights[name].iloc[-1]:.1%}"] for name in order])
        for r, name in enumerate(order):  # the name's colour in the stacked area
            self.contribution_table.item(r, 0).setForeground(self.layer_colour(list(weights.columns).index(name)))
            self.contribution_table.item(r, 0).setTextAlignment(Qt.AlignmentFlag.AlignLeft)
        risk = record["metrics"].get("risk", {})
        test = risk.get("backtest", {}).get("covariance", {})
        p_value = test.get("p_value")
        self.risk_text.setText(
            f"VaR {risk.get('level', 0.95):.0%} (covariance): {int(breach.sum())} breaches in {test.get('days', 0)} "
            f"days (expected {test.get('expected_rate', 0.05):.0%}); Kupiec p = "
            f"{'n/a' if p_value is None else f'{p_value:.3f}'}. Market beta {risk.get('market_beta', float('nan')):.2f}"
            f" today, {risk.get('average_market_beta', float('nan')):.2f} on average.")


__all__ = ["PortfolioPanel"]
