"""The main window: menus of QActions, dock panels with a saved layout, the job runner, the status bar.

Panels register through `add_panel`, so later panels (forecast, positions, equity, history) and
their actions (export signals, backtest) plug in without reshaping this file.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow, QMenu, QMessageBox, QTabWidget, QWidget

import engine
from engine.store import RunStore
from engine.training.events import Finished
from workstation import theme
from workstation.jobs import JobRunner
from workstation.panels.data_panel import DataPanel
from workstation.panels.training_panel import TrainingPanel
from workstation.status import StatusBar
from workstation.wizards.train_wizard import TrainRequest, TrainWizard

APP_TITLE = "Quant Workstation"
STATE_VERSION = 1  # bump when dock names change so an old saved layout is ignored


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
        self.store = store or RunStore()
        self.store.mark_interrupted()  # runs whose process died since the last session
        settings = QSettings()
        self.theme_name = str(settings.value("view/theme", "dark"))
        self.up_down = str(settings.value("view/up_down", "red-up"))
        self.palette_ = theme.palette(self.theme_name, self.up_down)
        self.runner = JobRunner(self)
        self.docks: dict[str, QDockWidget] = {}
        self.panels: dict[str, QWidget] = {}
        self.actions_: dict[str, QAction] = {}
        self.train_wizard: TrainWizard | None = None
        self._close_when_idle = False
        self.status = StatusBar(str(self.store.path))
        self.setStatusBar(self.status)
        self._build_actions()
        self.data_panel = DataPanel(self.palette_)
        self.training_panel = TrainingPanel(self.runner, self.palette_)
        self.add_panel("dataDock", "Data", self.data_panel)
        self.add_panel("trainingDock", "Training", self.training_panel, tabify_with="dataDock")
        self.docks["dataDock"].raise_()
        self._build_menus()
        self._connect_runner()
        self.resize(1400, 860)
        self._default_state = self.saveState(STATE_VERSION)
        self._restore_layout()

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
        a("export_signals", "&Export signals…", "Export the positions of a backtest as CSV",
          "Ctrl+E", enabled=False)
        a("quit", "&Quit", "Quit the workstation", QKeySequence.StandardKey.Quit, self.close)
        a("train", "&Train…", "Train a price or strategy network", QKeySequence.StandardKey.New,
          self.open_train_wizard)
        a("backtest", "&Backtest…", "Backtest a trained model", "Ctrl+B", enabled=False)
        a("cancel", "&Cancel job", "Stop the running job at its next step", "Esc", self.runner.cancel,
          enabled=False)
        a("reset_layout", "&Reset layout", "Put every panel back where it started", "Ctrl+Shift+R",
          self.reset_layout)
        a("about", "&About", "About this workstation", QKeySequence.StandardKey.HelpContents, self.about)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.actions_["import"], self.actions_["export_signals"]])
        file_menu.addSeparator()
        file_menu.addAction(self.actions_["quit"])
        run_menu = bar.addMenu("&Run")
        run_menu.addActions([self.actions_[k] for k in ("train", "backtest", "cancel")])
        view = bar.addMenu("&View")
        self.panels_menu = view.addMenu("&Panels")
        self.panels_menu.addActions([dock.toggleViewAction() for dock in self.docks.values()])
        self._choice_menu(view.addMenu("&Theme"), {t: t.capitalize() for t in theme.THEMES},
                          self.theme_name, self.set_theme, "Switch to the {} theme")
        self._choice_menu(view.addMenu("&Up/down colours"), theme.UP_DOWN, self.up_down,
                          self.set_up_down, "Use {} for rising and falling prices")
        view.addSeparator()
        view.addAction(self.actions_["reset_layout"])
        bar.addMenu("&Help").addAction(self.actions_["about"])

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
        """Open the wizard without blocking; accepting it starts the job."""
        if self.runner.is_running():
            self.statusBar().showMessage("A job is already running; cancel it first (Esc).", 5000)
            return self.train_wizard
        self.train_wizard = TrainWizard(self.data_panel.sources(), self.data_panel.bars, self.store,
                                        self.palette_, self)
        self.train_wizard.accepted.connect(lambda: self.start_training(self.train_wizard.request()))
        self.train_wizard.open()
        return self.train_wizard

    def start_training(self, request: TrainRequest) -> None:
        name = f"Training {request.stage} on {', '.join(request.datasets)}"
        self.runner.start(request.job(self.store), name)
        self.status.job_started(name)
        self.docks["trainingDock"].show()
        self.docks["trainingDock"].raise_()

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

    def about(self) -> None:
        QMessageBox.about(self, f"About {APP_TITLE}",
                          f"<b>{APP_TITLE}</b> {engine.__version__}<p>MLA Transformer price network and "
                          "GRU strategy network, trained on daily bars and judged by honest backtests.</p>"
                          f"<p>Run history: {self.store.path}</p>")

    # --- jobs -------------------------------------------------------------------------------

    def _connect_runner(self) -> None:
        self.runner.busy_changed.connect(self.actions_["cancel"].setEnabled)
        self.runner.busy_changed.connect(lambda busy: self.actions_["train"].setEnabled(not busy))
        self.runner.progress_changed.connect(self.status.job_progress)
        self.runner.finished.connect(self._on_job_finished)

    @Slot(object)
    def _on_job_finished(self, final: Finished) -> None:
        self.status.job_finished(self.runner.name, final.status)
        if self._close_when_idle:
            self.close()

    # --- persistence and closing ------------------------------------------------------------

    def _restore_layout(self) -> None:
        settings = QSettings()
        geometry, state = settings.value("window/geometry"), settings.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state, STATE_VERSION)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt naming)
        if self.runner.is_running():
            event.ignore()
            if self._close_when_idle or self._confirm_cancel():
                self._close_when_idle = True
                self.runner.cancel()
                self.statusBar().showMessage("Cancelling the running job before closing…")
            return
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

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 (Qt naming)
        self.data_panel.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 (Qt naming)
        self.data_panel.dropEvent(event)
        self.docks["dataDock"].raise_()
