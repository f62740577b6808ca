"""The main window: menus of QActions, dock panels with a saved layout, the job runner, the status bar.

Panels register through `add_panel`, so later panels (forecast, positions, equity, history) and
their actions (export signals, backtest) plug in without reshaping this file.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QIODevice, QSaveFile, QSettings, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDesktopServices,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMenu,
    QMessageBox,
    QTabWidget,
    QWidget,
)

import engine
from engine.events import Finished
from engine.jobs.backtest import BacktestRecord, export_backtest_signals
from engine.jobs.portfolio import export_portfolio_backtest
from engine.jobs.resume import resume_run
from engine.store import RunStore
from workstation import theme
from workstation.jobs import HISTORY_ADVICE, JobRunner, is_history_fault
from workstation.panels.backtest_panels import EquityPanel, PositionsPanel, load_view
from workstation.panels.data_panel import DataPanel
from workstation.panels.explain_panel import ExplainPanel
from workstation.panels.forecast_panel import ForecastPanel
from workstation.panels.history_panel import HistoryPanel
from workstation.panels.ledger_panel import LedgerPanel
from workstation.panels.portfolio_panel import PortfolioPanel
from workstation.panels.training_panel import TrainingPanel
from workstation.panels.universe_panel import UniversePanel
from workstation.resume_prompt import ResumePrompt, runs_to_offer
from workstation.status import StatusBar
from workstation.wizards.backtest_wizard import BacktestRequest, BacktestWizard
from workstation.wizards.train_wizard import TrainRequest, TrainWizard

APP_TITLE = "Quant Workstation"
STATE_VERSION = 2  # bump when dock names change so an old saved layout is ignored
LAST_BACKTEST_KEY = "session/backtest"
SAVE_FOLDER_KEY = "folders/save"  # the last folder any save dialog wrote to: where the next one starts
DOCS = Path(__file__).resolve().parents[1] / "docs"
CHART_KEYS = (("Left / Right", "pan a chart"), ("Up / + and Down / -", "zoom in and out"),
              ("Home / End", "every bar / the latest bars"), ("Mouse wheel, drag", "zoom and pan"))


class MainWindow(QMainWindow):
    """Owns the run store and the one JobRunner; panels are docks listed in View."""

    palette_changed = Signal(object)  # theme.Palette

    def __init__(self, store: RunStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(APP_TITLE)
        self.setObjectName("mainWindow")
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.setTabPosition(Qt.DockWidgetArea.AllDockWidgetAreas, QTabWidget.TabPosition.North)
        self.store = store or RunStore()  # opening it marks runs whose process died as interrupted
        settings = QSettings()
        self.theme_name = str(settings.value("view/theme", "dark"))
        self.up_down = str(settings.value("view/up_down", "market"))
        self.palette_ = theme.palette(self.theme_name, self.up_down)
        self.runner = JobRunner(self)
        self.docks: dict[str, QDockWidget] = {}
        self.panels: dict[str, QWidget] = {}
        self.actions_: dict[str, QAction] = {}
        self.train_wizard: TrainWizard | None = None
        self.backtest_wizard: BacktestWizard | None = None
        self.backtest_id: str | None = None  # the backtest the Positions and Equity panels show
        self._close_when_idle = False
        self._job_dock = ""  # the panel of the running job (the training panel explains its own failures)
        self.status = StatusBar(str(self.store.path))
        self.setStatusBar(self.status)
        self._build_actions()
        self.data_panel = DataPanel(self.palette_)
        self.training_panel = TrainingPanel(self.runner, self.palette_, store=self.store)
        self.add_panel("dataDock", "Data", self.data_panel)
        self.add_panel("trainingDock", "Training", self.training_panel, tabify_with="dataDock")
        self.forecast_panel = ForecastPanel(self.store, self.data_panel.sources, self.data_panel.bars, self.palette_)
        self.positions_panel = PositionsPanel(self.palette_)
        self.equity_panel = EquityPanel(self.palette_)
        self.history_panel = HistoryPanel(self.store, self.palette_)
        self.explain_panel = ExplainPanel(self.store, self.palette_)
        self.portfolio_panel = PortfolioPanel(self.store, self.palette_)
        self.ledger_panel = LedgerPanel(self.store, self.palette_, self.history_panel.current_run,
                                        self.data_panel.current_source, self.data_panel.sources)
        self.universe_panel = UniversePanel(self.store, self.palette_)
        for name, title, panel in (("forecastDock", "Forecast", self.forecast_panel),
                                   ("positionsDock", "Positions and regimes", self.positions_panel),
                                   ("explainDock", "Explain", self.explain_panel),
                                   ("equityDock", "Equity", self.equity_panel),
                                   ("portfolioDock", "Portfolio", self.portfolio_panel),
                                   ("historyDock", "History", self.history_panel),
                                   ("ledgerDock", "Ledger", self.ledger_panel),
                                   ("universeDock", "Universe", self.universe_panel)):
            self.add_panel(name, title, panel, tabify_with="dataDock")
        self.docks["dataDock"].raise_()
        self._build_menus()
        self._connect_runner()
        self.resize(1400, 860)
        self._default_state = self.saveState(STATE_VERSION)
        self._restore_layout()
        self.resume_prompt: ResumePrompt | None = None
        self.queue: list[tuple[object, str, str]] = []  # (job, name, dock) waiting for the runner
        QTimer.singleShot(0, self.restore_session)
        QTimer.singleShot(0, self.offer_resume)

    def offer_resume(self) -> None:
        """Once the window is up: list runs a crash interrupted and offer to resume one."""
        runs = runs_to_offer(self.store)
        if not runs:
            return
        self.resume_prompt = ResumePrompt(runs, self)
        self.resume_prompt.resume_requested.connect(self.resume_run)
        self.resume_prompt.show()

    # --- panels -----------------------------------------------------------------------------

    def add_panel(self, name: str, title: str, widget: QWidget,
                  area: Qt.DockWidgetArea = Qt.DockWidgetArea.LeftDockWidgetArea,
                  tabify_with: str | None = None) -> QDockWidget:
        """Dock a panel under a stable object name (saved layouts refer to it)."""
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        if tabify_with:
            self.tabifyDockWidget(self.docks[tabify_with], dock)
        self.docks[name] = dock
        self.panels[name] = widget
        if hasattr(widget, "set_palette"):
            self.palette_changed.connect(widget.set_palette)
        toggle = dock.toggleViewAction()
        toggle.setStatusTip(f"Show or hide the {title} panel")
        if hasattr(self, "panels_menu"):
            self.panels_menu.addAction(toggle)
        return dock

    # --- actions and menus ------------------------------------------------------------------

    def _action(self, key: str, text: str, tip: str, shortcut, slot=None, enabled: bool = True) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.setToolTip(tip)
        action.setEnabled(enabled)
        if slot is not None:
            action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even while the menu bar is hidden
        self.actions_[key] = action
        return action

    def _build_actions(self) -> None:
        a = self._action
        a("import", "&Import data…", "Import a file of daily bars (CSV, terminal export, Excel)",
          QKeySequence.StandardKey.Open, lambda: self.data_panel.choose_file())
        a("import_universe", "Import &universe…", "Import many instruments: a folder of files, a TDX vipdoc "
          "folder or a wide close table, in the background", "Ctrl+Shift+O", lambda: self.data_panel.choose_universe())
        a("export_signals", "&Export signals…", "Export the positions of a backtest as CSV",
          "Ctrl+E", self.export_signals, enabled=False)
        a("save_png", "Save chart as &PNG…", "Save the chart of the panel in front as a PNG image", "Ctrl+Shift+S",
          self.save_chart_png)
        a("update_data", "&Update data from…", "Append a newer export's bars to the selected dataset (revisions "
          "listed, kept unless applied)", "Ctrl+U", lambda: self.ledger_panel.choose_update())
        a("mark_live", "Mark &live…", "Mark the run selected in History live on a dataset: its signals are issued "
          "and paper-traded in the Ledger panel", "Ctrl+L", lambda: self.ledger_panel.choose_mark_live())
        a("evaluate_universe", "Evaluate on a &universe…", "Rank the run selected in History across the universe "
          "selected in Data, beside simple factors and LightGBM", "Ctrl+Shift+U", self.evaluate_universe)
        a("quit", "&Quit", "Quit the workstation", QKeySequence.StandardKey.Quit, self.close)
        a("train", "&Train…", "Train a price or strategy network", QKeySequence.StandardKey.New,
          self.open_train_wizard)
        a("backtest", "&Backtest…", "Backtest a trained model", "Ctrl+B", lambda: self.open_backtest_wizard())
        a("cancel", "&Cancel job", "Stop the running job at its next step", "Esc", self.runner.cancel,
          enabled=False)
        a("reset_layout", "&Reset layout", "Put every panel back where it started", "Ctrl+Shift+R",
          self.reset_layout)
        a("shortcuts", "&Keyboard shortcuts", "Every command's shortcut and the chart keys",
          QKeySequence.StandardKey.HelpContents, self.show_shortcuts)
        a("docs", "&Documentation", "Open the README and the docs folder", "", self.open_docs)
        a("about", "&About", "About this workstation", "", self.about)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.actions_[k] for k in ("import", "import_universe", "export_signals", "save_png")])
        file_menu.addSeparator()
        file_menu.addAction(self.actions_["quit"])
        bar.addMenu("&Data").addAction(self.actions_["update_data"])
        run_menu = bar.addMenu("&Run")
        run_menu.addActions([self.actions_[k] for k in ("train", "backtest", "mark_live", "evaluate_universe",
                                                        "cancel")])
        view = bar.addMenu("&View")
        self.panels_menu = view.addMenu("&Panels")
        self.panels_menu.addActions([dock.toggleViewAction() for dock in self.docks.values()])
        self._choice_menu(view.addMenu("&Theme"), {t: t.capitalize() for t in theme.THEMES},
                          self.theme_name, self.set_theme, "Switch to the {} theme")
        self._choice_menu(view.addMenu("&Up/down colours"), theme.UP_DOWN, self.up_down,
                          self.set_up_down, "Use {} for rising and falling prices")
        view.addSeparator()
        view.addAction(self.actions_["reset_layout"])
        bar.addMenu("&Help").addActions([self.actions_[k] for k in ("shortcuts", "docs", "about")])

    def _choice_menu(self, menu: QMenu, choices: dict[str, str], current: str, slot, tip: str) -> None:
        group = QActionGroup(menu)
        for key, text in choices.items():
            action = menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(key == current)
            action.setStatusTip(tip.format(text.lower()))
            action.triggered.connect(lambda _=False, k=key: slot(k))
            group.addAction(action)

    # --- commands ---------------------------------------------------------------------------

    def open_train_wizard(self) -> TrainWizard:
        """Open the wizard without blocking; accepting it starts the job (queued behind a running one)."""
        self.train_wizard = TrainWizard(self.data_panel.sources(), self.data_panel.bars, self.store,
                                        self.palette_, self, selected=self.data_panel.current_source())
        self.train_wizard.accepted.connect(lambda: self.start_training(self.train_wizard.request()))
        self.train_wizard.open()
        return self.train_wizard

    def start_training(self, request: TrainRequest) -> None:
        self._start_job(request.job(self.store), f"Training {request.stage} on {', '.join(request.datasets)}",
                        "trainingDock")

    def open_backtest_wizard(self, run_id: str | None = None) -> BacktestWizard:
        """Open the wizard (optionally with a run chosen); accepting it starts (or queues) the job."""
        self.backtest_wizard = BacktestWizard(self.store, self.data_panel.sources(), self.data_panel.bars,
                                              run_id, self)
        self.backtest_wizard.accepted.connect(lambda: self.start_backtest(self.backtest_wizard.request()))
        self.backtest_wizard.open()
        return self.backtest_wizard

    def start_backtest(self, request: BacktestRequest) -> None:
        kind = f"Walk-forward ({request.folds} folds)" if request.folds else "Backtest"
        kind += " of a portfolio" if request.portfolio else ""
        self._start_job(request.job(self.store), f"{kind} of {request.source} on {request.data}",
                        "portfolioDock" if request.portfolio else "equityDock")

    def evaluate_universe(self) -> None:
        """The Run menu's Universe…: the History selection's run on the Data selection's universe."""
        if self.universe_panel.choose(self.history_panel.current_run(), self.data_panel.current_source()):
            self.docks["universeDock"].raise_()

    def resume_run(self, run_id: str) -> None:
        record = self.store.get_run(run_id)
        if record is None:
            return
        self._start_job(lambda cancel: resume_run(self.store, run_id, cancel),
                        f"Resuming {record['kind']} run {run_id}", "trainingDock")

    def _start_job(self, job, name: str, dock: str) -> None:
        """Run a job now, or queue it behind the running one (Cancel stops the running one only)."""
        if self.runner.is_running():
            self.queue.append((job, name, dock))
            self.status.set_queued([n for _, n, _ in self.queue])
            self.statusBar().showMessage(f"Queued: {name} (starts when {self.runner.name} ends)", 8000)
            return
        self._job_dock = dock
        self.runner.start(job, name)
        self.status.job_started(name)
        self.docks[dock].show()
        self.docks[dock].raise_()

    def show_backtest(self, backtest_id: str, bring_forward: bool = True) -> None:
        """Fill the Positions and Equity panels from a recorded backtest; it becomes the one exported
        and the one shown again after a relaunch. A portfolio backtest opens in the Portfolio panel."""
        record = self.store.get_backtest(backtest_id)
        portfolio = record is not None and record["config"].get("kind") == "portfolio"
        if portfolio:
            self.portfolio_panel.show_backtest(backtest_id)
        else:
            view = load_view(self.store, backtest_id, self.data_panel.bars)
            self.positions_panel.show_backtest(view)
            self.equity_panel.show_backtest(view)
        self.backtest_id = backtest_id
        QSettings().setValue(LAST_BACKTEST_KEY, backtest_id)
        self.actions_["export_signals"].setEnabled(True)
        if bring_forward:
            self.docks["portfolioDock" if portfolio else "equityDock"].raise_()

    def restore_session(self) -> None:
        """The backtest the panels showed when the workstation was last closed, if it still exists."""
        backtest_id = QSettings().value(LAST_BACKTEST_KEY)
        if backtest_id and self.store.get_backtest(str(backtest_id)) is not None:
            try:
                self.show_backtest(str(backtest_id), bring_forward=False)
            except (OSError, ValueError) as error:  # a damaged frame: start empty, say why
                self.statusBar().showMessage(f"Could not show the last backtest {backtest_id}: {error}", 8000)

    @Slot(str)
    def _on_backtest_deleted(self, backtest_id: str) -> None:
        """The panels may keep showing it, but there is nothing left to export."""
        if backtest_id == self.backtest_id:
            self.backtest_id = None
            self.actions_["export_signals"].setEnabled(False)

    def show_forecast(self, run_id: str) -> None:
        self.forecast_panel.set_model(run_id)
        self.docks["forecastDock"].show()
        self.docks["forecastDock"].raise_()

    def export_signals(self) -> None:
        """Save the shown backtest's signals CSV (atomic) where the user chooses; recorded in the history."""
        settings = QSettings()
        folder = Path(str(settings.value(SAVE_FOLDER_KEY, settings.value("folders/export", Path.home()))))
        path, _ = QFileDialog.getSaveFileName(self, "Export signals", str(folder / f"{self.backtest_id}.csv"),
                                              "CSV files (*.csv)")
        if not path:
            return
        try:
            record = self.store.get_backtest(self.backtest_id)
            if record is not None and record["config"].get("kind") == "portfolio":  # long format, a row per name
                written, rows = export_portfolio_backtest(self.store, record, path)
            else:
                written, rows = export_backtest_signals(self.store, self.backtest_id, path)
        except (OSError, ValueError) as error:
            QMessageBox.warning(self, "Export failed", str(error))
            return
        settings.setValue("folders/export", str(written.parent))
        settings.setValue(SAVE_FOLDER_KEY, str(written.parent))
        self.statusBar().showMessage(f"Exported {rows} rows to {written}", 8000)
        self.history_panel.refresh()

    def save_chart_png(self) -> None:
        """Save the chart of the panel in front (QWidget.grab: pyqtgraph's SVG export is broken)."""
        chart = next((panel.chart_widget() for panel in self.panels.values()
                      if hasattr(panel, "chart_widget") and not panel.visibleRegion().isEmpty()), None)
        if chart is None:
            self.statusBar().showMessage("Bring a chart panel to the front first.", 5000)
            return
        settings = QSettings()
        folder = Path(str(settings.value(SAVE_FOLDER_KEY, settings.value("folders/png", Path.home()))))
        path, _ = QFileDialog.getSaveFileName(self, "Save chart as PNG", str(folder / "chart.png"),
                                              "PNG images (*.png)")
        if not path:
            return
        file = QSaveFile(path)
        if not (file.open(QIODevice.OpenModeFlag.WriteOnly) and chart.grab().save(file, "PNG") and file.commit()):
            QMessageBox.warning(self, "Save failed", f"Could not write {path}: {file.errorString()}")
            return
        settings.setValue("folders/png", str(Path(path).parent))
        settings.setValue(SAVE_FOLDER_KEY, str(Path(path).parent))
        self.statusBar().showMessage(f"Saved {path}", 5000)

    def set_theme(self, name: str) -> None:
        self.theme_name = name
        self._apply_palette()

    def set_up_down(self, name: str) -> None:
        self.up_down = name
        self._apply_palette()

    def _apply_palette(self) -> None:
        settings = QSettings()
        settings.setValue("view/theme", self.theme_name)
        settings.setValue("view/up_down", self.up_down)
        self.palette_ = theme.apply(QApplication.instance(), self.theme_name, self.up_down)
        self.palette_changed.emit(self.palette_)

    def reset_layout(self) -> None:
        for dock in self.docks.values():
            dock.setFloating(False)
            dock.show()
        self.restoreState(self._default_state, STATE_VERSION)
        self.docks["dataDock"].raise_()

    def shortcuts_html(self) -> str:
        rows = [(a.shortcut().toString(QKeySequence.SequenceFormat.NativeText), a.text().replace("&", ""))
                for a in self.actions_.values() if not a.shortcut().isEmpty()] + list(CHART_KEYS)
        return "<table cellspacing=4>" + "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows) + \
            f"</table><p>Documentation: <a href='{DOCS.parent.as_uri()}/README.md'>README</a> · " \
            f"<a href='{DOCS.as_uri()}'>docs folder</a></p>"

    def show_shortcuts(self) -> None:
        box = QMessageBox(QMessageBox.Icon.NoIcon, "Keyboard shortcuts", self.shortcuts_html(), parent=self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def open_docs(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(DOCS.parent / "README.md")))
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(DOCS)))

    def about(self) -> None:
        QMessageBox.about(self, f"About {APP_TITLE}",
                          f"<b>{APP_TITLE}</b> {engine.__version__}<p>MLA Transformer price network and "
                          "GRU strategy network, trained on daily bars and judged by honest backtests.</p>"
                          f"<p>Run history: {self.store.path}</p>")

    # --- jobs -------------------------------------------------------------------------------

    def _connect_runner(self) -> None:
        self.runner.busy_changed.connect(self.actions_["cancel"].setEnabled)
        self.runner.progress_changed.connect(self.status.job_progress)
        self.runner.progressed.connect(lambda e: self.status.job_phase(e.message))
        self.runner.stepped.connect(lambda _e: self.status.job_phase(""))  # QLabel skips a same text
        self.runner.finished.connect(self._on_job_finished)
        self.history_panel.open_forecast.connect(self.show_forecast)
        self.forecast_panel.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        for panel in (self.forecast_panel, self.positions_panel):
            panel.day_picked.connect(self.explain_panel.explain)
        self.explain_panel.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        self.ledger_panel.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        self.universe_panel.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        self.history_panel.open_backtest.connect(self.show_backtest)
        self.history_panel.backtest_requested.connect(self.open_backtest_wizard)
        self.history_panel.resume_requested.connect(self.resume_run)
        self.history_panel.backtest_deleted.connect(self._on_backtest_deleted)

    @Slot(object)
    def _on_job_finished(self, final: Finished | BacktestRecord) -> None:
        self.status.job_finished(self.runner.name, final.status)
        if final.status == "failed":
            (self.training_panel.show_failure if self._job_dock == "trainingDock" else self._failure_box)(final)
        self.history_panel.refresh()
        self.forecast_panel.refresh()
        if isinstance(final, BacktestRecord) and final.status == "finished":
            self.show_backtest(final.backtest_id)
        if self._close_when_idle:
            self.queue.clear()
            self.close()
        elif self.queue:
            self._start_job(*self.queue.pop(0))
        self.status.set_queued([n for _, n, _ in self.queue])

    def _failure_box(self, final: Finished | BacktestRecord) -> None:
        """Window-modal but non-blocking, like every job dialog: the GUI stays usable behind it."""
        error = final.error
        lines = (error or "unknown error").strip().splitlines()
        box = QMessageBox(QMessageBox.Icon.Warning, "Job failed", f"{self.runner.name} failed: {lines[-1]}",
                          parent=self)
        if is_history_fault(error):
            box.setInformativeText(HISTORY_ADVICE)
        box.setDetailedText(error or "")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # --- persistence and closing ------------------------------------------------------------

    def _restore_layout(self) -> None:
        settings = QSettings()
        geometry, state = settings.value("window/geometry"), settings.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state, STATE_VERSION)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.runner.is_running():
            event.ignore()
            if self._close_when_idle or self._confirm_cancel():
                self._close_when_idle = True
                self.runner.cancel()
                self.statusBar().showMessage("Cancelling the running job before closing…")
            return
        for view in (self.training_panel.evaluation, self.forecast_panel.evaluation, self.explain_panel,
                     self.ledger_panel, self.universe_panel):
            view.stop()  # an evaluation or explanation thread must not outlive the window
        self.data_panel.stop_import()
        settings = QSettings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState(STATE_VERSION))
        event.accept()

    def _confirm_cancel(self) -> bool:
        answer = QMessageBox.question(
            self, "A job is running", f"{self.runner.name} is still running.\n\nCancel it and close? "
            "The run is recorded as cancelled and its checkpoints are kept.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        self.data_panel.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.data_panel.dropEvent(event)
        self.docks["dataDock"].raise_()
