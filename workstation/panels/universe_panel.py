"""A universe judged across the cross-section: which instruments were scored, the model's rolling rank
IC over time, its IC by horizon, and the simple factors and LightGBM beside it on the same days.

Fed by the `evaluate` job's report (engine.jobs.evaluate), run off the UI thread through its own JobRunner.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from engine.data.universe import expand_sources, is_universe, split_member
from engine.events import Finished
from engine.jobs.evaluate import EvaluationReport, evaluate_job
from engine.store import RunStore
from workstation.charts import date_plot, style_axes
from workstation.jobs import JobRunner
from workstation.panels.layout import stack
from workstation.theme import Palette

ROLLING_DAYS = 60  # the rolling rank IC's window


def _fmt(value: float | None, fmt: str = "+.3f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    return table


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight if c else Qt.AlignmentFlag.AlignLeft)
            table.setItem(r, c, item)


class UniversePanel(QWidget):
    """Coverage table, rolling 60-day rank IC (h = 1), rank IC by horizon (bars), factor comparison table."""

    reported = Signal(object)  # the EvaluationReport shown
    message = Signal(str)  # why a Universe… request was refused (the status bar shows it)

    def __init__(self, store: RunStore, palette: Palette, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("universePanel")
        self.store, self.report = store, None
        self.runner = JobRunner(self)
        self.note = QLabel("No universe evaluation yet.")
        self.note.setWordWrap(True)
        self.coverage = _table(["Instrument", "First", "Last", "Days"])
        self.rolling = pg.PlotWidget(plotItem=date_plot(pd.DatetimeIndex([])))
        self.rolling.setTitle(f"Rolling {ROLLING_DAYS}-day rank IC, 1 day ahead")
        self.rolling_curve = self.rolling.plot(pen=pg.mkPen(palette.accent, width=1.5))
        self.rolling.addItem(pg.InfiniteLine(0, angle=0, pen=pg.mkPen(palette.muted)))
        self.by_horizon = pg.PlotWidget()
        self.by_horizon.setTitle("Rank IC by horizon (model, LightGBM)")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.4, brush=palette.accent)
        self.lgbm_bars = pg.BarGraphItem(x=[], height=[], width=0.4, brush=palette.series[1])
        for item in (self.bars, self.lgbm_bars):
            self.by_horizon.addItem(item)
        for plot in (self.rolling, self.by_horizon):
            style_axes(plot.getPlotItem(), palette)
            plot.setBackground(palette.base)
            left = plot.getPlotItem().getAxis("left")
            left.setWidth(52)  # room for "-0.10": a narrower axis dropped every label that did not fit
            for name in ("left", "bottom"):  # the grid (drawn by the axes) under the curve and bars, not over them
                plot.getPlotItem().getAxis(name).setZValue(-1)
        self.by_horizon.getPlotItem().showGrid(x=False, y=True, alpha=1.0)  # lines between bars say nothing
        self.comparison = _table(["Forecaster", "Rank IC", "IC", "ICIR", "Top - bottom"])
        self.horizon_note = QLabel("")
        charts = QSplitter(Qt.Orientation.Horizontal)
        charts.addWidget(self.rolling)
        charts.addWidget(self.by_horizon)
        tables = QSplitter(Qt.Orientation.Horizontal)
        tables.addWidget(self.coverage)
        tables.addWidget(self.comparison)
        stack(self, self.note, (charts, 1), self.horizon_note, (tables, 1))
        self.runner.finished.connect(self._on_finished)

    def choose(self, run_id: str | None, source: str | None) -> bool:
        """Evaluate a finished run (the History selection) on the universe selected in the Data panel (a
        member stands for its universe); False, with the reason in `message`, when either is missing."""
        record = self.store.get_run(run_id) if run_id else None
        if record is None or record["kind"] not in ("price", "strategy") or record["status"] != "finished":
            self.message.emit("Select a finished price or strategy run in the History panel first.")
            return False
        member = split_member(source) if source else None
        universe = member[0] if member else source
        if not universe or not is_universe(universe):
            self.message.emit("Select a universe (or one of its instruments) in the Data panel first.")
            return False
        if self.runner.is_running():
            self.message.emit("A universe evaluation is already running.")
            return False
        self.evaluate(run_id, [universe])
        return True

    def evaluate(self, model_ref: str, datasets: list[str] | None = None) -> None:
        """Evaluate model_ref on these datasets, each universe read as its members (None: those it
        trained on) in the background: reading a universe's files is work for the job's thread too."""
        if self.runner.is_running():
            return
        store = self.store
        self.note.setText(f"Evaluating {model_ref} across the universe…")
        self.runner.start(lambda token: evaluate_job(model_ref, expand_sources(datasets)[0] if datasets else None,
                                                     store=store, cancel=token), f"Evaluating {model_ref}")

    def stop(self, timeout_ms: int = 30_000) -> None:
        if self.runner.is_running():
            self.runner.cancel()
            self.runner.wait(timeout_ms)

    @Slot(object)
    def _on_finished(self, result: object) -> None:
        if isinstance(result, EvaluationReport) and result.status == "finished":
            self.show_report(result)
        elif isinstance(result, Finished | BaseException) or result is None:
            self.note.setText(f"Evaluation failed: {result}")

    def show_report(self, report: EvaluationReport) -> None:
        self.report = report
        rows = [[name, *info["period"], str(info["horizons"][0]["days"])]
                for name, info in sorted(report.instruments.items())]
        _fill(self.coverage, rows)
        section = report.cross_section
        if not section:
            self.note.setText("Too few instruments for a cross-section (5 a day at least).")
            self.reported.emit(report)
            return
        self.note.setText(f"<b>{len(rows)} instruments</b>, run {report.run_id or report.checkpoint_sha256[:12]}: "
                          "ranks across instruments each day (h-day log returns)")
        self._rolling(section.get("daily"))
        model = section["horizons"]
        lgbm = (section.get("lightgbm") or {}).get("horizons")
        h = np.array([r["h"] for r in model], dtype=float)
        self.bars.setOpts(x=h - 0.2, height=np.nan_to_num([r["rank_ic"] for r in model]))
        self.lgbm_bars.setOpts(x=h + 0.2, height=np.nan_to_num([r["rank_ic"] for r in lgbm]) if lgbm else [])
        row = lambda name, rs, i: [name, *(_fmt(rs[i][k]) for k in ("rank_ic", "ic", "icir")),
                                   _fmt(rs[i]["top_minus_bottom"], "+.2%")]
        table = [row("model", model, 0)]
        if lgbm:
            table.append(row("LightGBM (hand-made factors)", lgbm, 0))
        table += [row(name, f["horizons"], 0) for name, f in section.get("factors", {}).items()]
        _fill(self.comparison, table)
        self.horizon_note.setText("Factor comparison at h = 1; IC by horizon above. A factor's score is the "
                                  "same for every horizon; LightGBM learned each horizon's excess return.")
        self.reported.emit(report)

    def _rolling(self, daily: dict | None) -> None:
        if not daily:
            self.rolling_curve.setData([], [])
            return
        dates = pd.DatetimeIndex(daily["dates"])
        ic = pd.Series([np.nan if v is None else v for v in daily["rank_ic"]["1"]], dtype=float)
        rolled = ic.rolling(ROLLING_DAYS, min_periods=ROLLING_DAYS // 2).mean().to_numpy()
        self.rolling.getPlotItem().getAxis("bottom").set_dates(dates)
        self.rolling_curve.setData(np.arange(len(dates), dtype=float), rolled, connect="finite")
        finite = rolled[np.isfinite(rolled)]
        if len(finite):  # fit the curve and the zero line now, not at the next paint (the axis ticks follow)
            plot = self.rolling.getPlotItem()
            plot.setYRange(min(finite.min(), 0.0), max(finite.max(), 0.0), padding=0.08)
            plot.setXRange(0, len(dates) - 1, padding=0.02)


__all__ = ["ROLLING_DAYS", "UniversePanel"]
