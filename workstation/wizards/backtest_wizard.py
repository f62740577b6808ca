"""The backtest wizard: a trained run -> dataset and period -> (a universe: the portfolio) -> costs and
market rules.

A universe in the dataset list (its members' UNIVERSE:CODE prefix) switches to portfolio mode: every
member is forecast and traded as one book (engine/jobs/portfolio.py), with its construction on a page
of its own.

The period defaults to the held-out test part when the dataset was used in training, and the
wizard warns (it does not refuse) when a chosen period reaches back into days the model trained
or validated on. The backtest itself runs in the JobRunner; this only collects a BacktestRequest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PySide6.QtCore import QDate, QSettings, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from engine.backtest.ashare import board_limit
from engine.config import BacktestConfig
from engine.data.io import BarTable
from engine.data.universe import split_member
from engine.events import CancelToken, Event
from engine.jobs.backtest import Source, backtest_job, default_period, load_source, overlaps_training
from engine.jobs.portfolio import portfolio_job, portfolio_walk_forward_job
from engine.jobs.walkforward import walk_forward_job
from engine.portfolio import PortfolioConfig
from engine.store import RunStore
from workstation.wizards.fields import DateField, dspin, error_label, remember_fields, restore_fields, spin
from workstation.wizards.portfolio_fields import CostFields, PortfolioFields

SETTINGS_GROUP = "wizard/backtest"
KINDS = {"strategy": "strategy (its positions)", "price": "price (follow the forecast)"}


@dataclass
class BacktestRequest:
    source: str  # a run id
    data: str  # a sample name or file path
    cfg: BacktestConfig
    folds: int = 0  # above 0: walk-forward, retraining the run before each of this many blocks
    fraction: float = 0.5  # share of the history the walk-forward blocks cover
    portfolio: PortfolioConfig | None = None  # data is a universe traded as one book

    def job(self, store: RunStore) -> Callable[[CancelToken], Iterator[Event]]:
        if self.portfolio and self.folds:
            return lambda cancel: portfolio_walk_forward_job(self.source, self.data, folds=self.folds,
                                                             pcfg=self.portfolio, cfg=self.cfg, store=store,
                                                             fraction=self.fraction, cancel=cancel)
        if self.portfolio:
            return lambda cancel: portfolio_job(self.source, self.data, pcfg=self.portfolio, cfg=self.cfg,
                                                store=store, cancel=cancel)
        if self.folds:
            return lambda cancel: walk_forward_job(self.source, self.data, folds=self.folds, cfg=self.cfg,
                                                   store=store, fraction=self.fraction, cancel=cancel)
        return lambda cancel: backtest_job(self.source, self.data, cfg=self.cfg, store=store, cancel=cancel)


def universe_names(sources: list[tuple[str, str]]) -> list[str]:
    """Each universe whose members are among the (label, source) datasets, in their order."""
    return list(dict.fromkeys(m[0] for _, source in sources if (m := split_member(source))))


def with_universes(sources: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The datasets, then each universe whose members are among them (as its name: portfolio mode)."""
    return sources + [(f"{name} (universe: portfolio)", name) for name in universe_names(sources)]


def _qdate(text: str) -> QDate:
    return QDate.fromString(text, "yyyy-MM-dd")


class SourcePage(QWizardPage):
    """Finished strategy runs (trade their positions) and price runs (follow their forecast)."""

    def __init__(self, store: RunStore, preselect: str | None) -> None:
        super().__init__()
        self.setTitle("Model")
        self.setSubTitle("Choose a finished strategy run, or a price run to trade 'follow the forecast'.")
        self.runs = QTreeWidget()
        self.runs.setHeaderLabels(["Run", "Kind", "Trained on", "Started"])
        self.runs.setRootIsDecorated(False)
        self.runs.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.runs.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        for kind in KINDS:
            for record in store.list_runs(kind=kind, status="finished"):
                item = QTreeWidgetItem(self.runs, [record["run_id"], KINDS[kind], record["dataset"],
                                                   record["started"].replace("T", " ")[:16]])
                item.setData(0, Qt.ItemDataRole.UserRole, record["run_id"])
                if record["run_id"] == preselect:
                    self.runs.setCurrentItem(item)
        self.error = error_label()
        if self.runs.topLevelItemCount() == 0:
            self.error.setText("No finished run yet: train a price network (and a strategy on it) first.")
        layout = QVBoxLayout(self)
        layout.addWidget(self.runs)
        layout.addWidget(self.error)
        self.runs.currentItemChanged.connect(lambda *_: self.completeChanged.emit())

    def run_id(self) -> str | None:
        item = self.runs.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item else None

    def isComplete(self) -> bool:
        return self.run_id() is not None


class PeriodPage(QWizardPage):
    """Dataset and period; the default is the held-out test period of that dataset."""

    def __init__(self, sources: list[tuple[str, str]], bars: Callable[[str], BarTable]) -> None:
        super().__init__()
        self.setTitle("Data and period")
        self.setSubTitle("Backtest on days the model never fitted: the default is the held-out test period.")
        self._bars = bars
        self._members = {m[0]: source for _, source in sources if (m := split_member(source))}
        self.src: Source | None = None
        self.held_out = ""
        self.period_info = ""  # what the info line says about the held-out period
        self.dataset = QComboBox()
        for label, source in with_universes(sources):
            self.dataset.addItem(label, source)
        self.start, self.end = DateField("First day traded"), DateField("Last day traded")
        self.folds = spin(0, 50, 0, "Walk-forward: retrain the run's recipe before each of this many "
                          "blocks of the latest history, on data up to the block only, and trade the "
                          "stitched blocks (slow: one training per fold)", special="off")
        self.fraction = dspin(0.1, 0.9, 0.5, "Share of the usable history the walk-forward blocks cover")
        self.default_button = QPushButton("Held-out period")
        self.default_button.setToolTip("Reset the period to the held-out default for this model and dataset")
        self.info = QLabel()
        self.info.setProperty("role", "muted")
        self.info.setWordWrap(True)
        self.warning = QLabel()
        self.warning.setProperty("role", "banner-warn")
        self.warning.setWordWrap(True)
        self.warning.setVisible(False)
        self.error = error_label()
        dates = QHBoxLayout()
        for widget in (self.start, QLabel("to"), self.end, self.default_button):
            dates.addWidget(widget)
        dates.addStretch(1)
        form = QFormLayout()
        form.addRow("Dataset", self.dataset)
        form.addRow("Period", dates)
        walk = QHBoxLayout()
        for widget in (self.folds, QLabel("folds over the last"), self.fraction, QLabel("of the history")):
            walk.addWidget(widget)
        walk.addStretch(1)
        form.addRow("Walk-forward", walk)
        layout = QVBoxLayout(self)  # word-wrapped labels outside the form get their full height
        layout.addLayout(form)
        for label in (self.info, self.warning, self.error):
            layout.addWidget(label)
        layout.addStretch(1)
        self.dataset.currentIndexChanged.connect(self.reset_period)
        self.default_button.clicked.connect(self.reset_period)
        for edit in (self.start, self.end):
            edit.dateChanged.connect(self._check_overlap)
        self.folds.valueChanged.connect(self._on_folds)
        self._on_folds(0)

    def _on_folds(self, folds: int) -> None:
        """Walk-forward picks its own blocks: the period does not apply."""
        for widget in (self.start, self.end, self.default_button):
            widget.setEnabled(not folds)
        self.fraction.setEnabled(bool(folds))
        if folds:
            self.warning.setVisible(False)
            self.info.setText(f"Walk-forward: the run is retrained {folds} times, each time on data up to "
                              "the next block only, and the blocks are traded as one backtest; the period "
                              "above does not apply.")
        else:
            self.info.setText(self.period_info)
            self._check_overlap()

    def initializePage(self) -> None:
        self.src = self.wizard().source()
        if self.src is None:
            return
        trained = [s for s in self.src.datasets if self.dataset.findData(s) >= 0]
        remembered = QSettings().value(f"{SETTINGS_GROUP}/dataset")
        choice = trained[0] if trained else remembered
        self.dataset.blockSignals(True)
        self.dataset.setCurrentIndex(max(0, self.dataset.findData(choice)))
        self.dataset.blockSignals(False)
        self.reset_period()

    def data(self) -> str:
        return self.dataset.currentData()

    def is_universe(self) -> bool:
        return self.data() in self._members

    def bars(self) -> BarTable:
        """The dataset's bars; for a universe its first member's (its dates bound the period)."""
        return self._bars(self._members.get(self.data(), self.data()))

    def nextId(self) -> int:
        """A universe goes through the portfolio page, one instrument straight to the costs."""
        wizard = self.wizard()
        return wizard.page_ids[wizard.portfolio_page if self.is_universe() else wizard.costs_page]

    def period(self) -> tuple[str, str]:
        return self.start.date().toString("yyyy-MM-dd"), self.end.date().toString("yyyy-MM-dd")

    def reset_period(self) -> None:
        if self.src is None:
            return
        try:
            bars = self.bars()
            start, end = default_period(self.src, bars)
        except Exception as error:  # an unreadable file or a too-short series: explain it here
            self.error.setText(str(error))
            return
        self.error.setText("")
        self.held_out = start
        dates = bars.frame.index
        for edit in (self.start, self.end):
            edit.blockSignals(True)
            edit.setDateRange(_qdate(f"{dates[0]:%Y-%m-%d}"), _qdate(f"{dates[-1]:%Y-%m-%d}"))
            edit.blockSignals(False)
        self.start.setDate(_qdate(start))
        self.end.setDate(_qdate(end))
        seen = bool(self.src.trained_on(bars))
        self.period_info = (f"Held-out period from {start} (the test split the model never fitted)." if seen else
                            f"The model never trained on {bars.instrument}: the whole usable history is "
                            f"out of sample, from {start}.")
        self._on_folds(self.folds.value())

    def _check_overlap(self) -> None:
        if self.src is None or self.folds.value():
            return
        start, _ = self.period()
        overlaps = overlaps_training(self.src, self.bars(), start)
        self.warning.setText(f"This period starts before {self.held_out}: the model trained "
                             "or validated on some of these days, so the results there are in-sample and "
                             "will look better than live trading." if overlaps else "")
        self.warning.setVisible(overlaps)

    def validatePage(self) -> bool:
        start, end = self.period()
        self.error.setText("" if start < end else "The period must start before it ends.")
        return start < end


class PortfolioPage(QWizardPage):
    """How a universe's forecasts become one book (the fields the Mark live dialog shares)."""

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Portfolio")
        self.setSubTitle("Every member is forecast and the book is rebuilt at decision closes; the baselines "
                         "(1/N, inverse volatility, 12-1 momentum, the index) trade the same days and costs.")
        self.fields = PortfolioFields()
        self.fields.add_rows(QFormLayout(self))

    def config(self) -> PortfolioConfig:
        return self.fields.config()


class CostsPage(QWizardPage):
    """Trading costs, slippage and the A-share rules (price limits)."""

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Costs and market rules")
        self.setSubTitle("Costs are charged on every change of position; Finish runs the backtest in the "
                         "background.")
        defaults = BacktestConfig()
        self.costs = CostFields()
        self.limit_pct = dspin(0.01, 0.5, board_limit(""), "Daily price limit (0.10 main board, 0.05 ST, "
                                "0.20 STAR/ChiNext, 0.30 Beijing; set from the code)", decimals=2)
        self.risk_free = dspin(0.0, 20.0, defaults.risk_free * 100, "Annual risk-free rate, in percent, "
                                "subtracted in Sharpe and Sortino", decimals=2, step=0.25)
        self.risk_free.setSuffix(" %")
        self.risk_aversion = dspin(0.1, 50.0, defaults.risk_aversion, "The analytic baseline's risk aversion "
                                    "lambda: it holds clip(median / (lambda sigma^2), 0, 1) of the model's 1-day "
                                    "forecast (larger: smaller positions)", decimals=1, step=0.5)
        form = QFormLayout(self)
        self.costs.add_rows(form)
        for label, widget in (("Price limit", self.limit_pct), ("Risk-free rate (annual)", self.risk_free),
                              ("Analytic risk aversion", self.risk_aversion)):
            form.addRow(label, widget)
        self.costs.ashare.toggled.connect(self.limit_pct.setEnabled)

    def initializePage(self) -> None:
        bars = self.wizard().period_page.bars()
        self.costs.ashare.setChecked(bars.market == "cn")
        self.limit_pct.setValue(board_limit(bars.instrument))
        self.limit_pct.setEnabled(self.costs.ashare.isChecked())


class BacktestWizard(QWizard):
    """Collects a BacktestRequest; `request()` is valid once the wizard is accepted."""

    def __init__(self, store: RunStore, sources: list[tuple[str, str]], bars: Callable[[str], BarTable],
                 preselect: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Backtest a model")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Run backtest")
        self.resize(760, 480)
        self.store = store
        self._loaded: dict[str, Source] = {}
        self.source_page = SourcePage(store, preselect)
        self.period_page = PeriodPage(sources, bars)
        self.portfolio_page = PortfolioPage()
        self.costs_page = CostsPage()
        self.page_ids = {page: self.addPage(page)
                         for page in (self.source_page, self.period_page, self.portfolio_page, self.costs_page)}
        self._restore()
        self.accepted.connect(self._remember)

    def source(self) -> Source | None:
        """The chosen run, loaded once (weights only) for its training split; errors shown on page 1."""
        run_id = self.source_page.run_id()
        if run_id and run_id not in self._loaded:
            QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
            try:
                self._loaded[run_id] = load_source(run_id, self.store)
            except Exception as error:  # a missing or changed checkpoint
                self.period_page.error.setText(f"Cannot load {run_id}: {error}")
            finally:
                QGuiApplication.restoreOverrideCursor()
        return self._loaded.get(run_id)

    def request(self) -> BacktestRequest:
        start, end = self.period_page.period()
        c = self.costs_page
        limit = c.limit_pct.value()  # the board's own limit: None lets the engine date its changes
        by_code = limit == board_limit(self.period_page.bars().instrument)
        cfg = c.costs.config(limit_pct=None if by_code else limit, risk_free=c.risk_free.value() / 100,
                             risk_aversion=c.risk_aversion.value(), start=start, end=end)
        p = self.period_page
        return BacktestRequest(self.source_page.run_id(), p.data(), cfg, p.folds.value(), p.fraction.value(),
                               self.portfolio_page.config() if p.is_universe() else None)

    def _fields(self) -> dict:
        c, costs = self.costs_page, self.costs_page.costs
        return {"fill": costs.fill, "cost_bps": costs.cost_bps, "slippage_bps": costs.slippage_bps,
                "stamp_duty_bps": costs.stamp_duty_bps, "risk_free_pct": c.risk_free, "risk_aversion": c.risk_aversion,
                "fraction": self.period_page.fraction}  # folds start off: each one is a training run

    def _restore(self) -> None:
        restore_fields(SETTINGS_GROUP, self._fields())

    def _remember(self) -> None:
        remember_fields(SETTINGS_GROUP, self._fields())
        QSettings().setValue(f"{SETTINGS_GROUP}/dataset", self.period_page.data())
