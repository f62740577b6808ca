"""A new user's first session (issue 18): the market is the user's, stale curves go, markers and single
points show, volume bars never vanish, disabled menu items look disabled, and every bad row of an
import is listed with its date."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor
from PySide6.QtWidgets import QMenu

from engine.data import list_samples, load_bars
from engine.events import EvalEvent, RunStarted, StepEvent
from engine.store import RunStore
from engine.training.price import train_price
from tests.engine.data.test_io import _netease_export, _short_rows
from tests.engine.helpers import TINY_PRICE
from tests.workstation.helpers import SMALL_DATASET
from tests.workstation.test_gui_results import DATA, TRAIN
from workstation.charts import PriceChart
from workstation.panels.data_panel import DataPanel
from workstation.panels.history_panel import HistoryPanel
from workstation.wizards.backtest_wizard import BacktestWizard


def _issues(panel: DataPanel) -> list[list[str]]:
    tree = panel.issues
    return [[tree.topLevelItem(i).text(c) for c in range(5)] for i in range(tree.topLevelItemCount())]


def _ashare_preticked(window, source: str) -> bool:
    wizard = BacktestWizard(window.store, window.data_panel.sources(), window.data_panel.bars)
    wizard.period_page.dataset.setCurrentIndex(wizard.period_page.dataset.findData(source))
    wizard.costs_page.initializePage()
    checked = wizard.costs_page.costs.ashare.isChecked()
    wizard.deleteLater()
    return checked


def test_the_market_is_the_users_choice_per_dataset_and_remembered(window, tmp_path):
    panel = window.data_panel
    path = str(_netease_export(tmp_path / "microsoft.csv", "MSFT", "微软").resolve())
    panel.import_file(path)
    assert panel.market.currentData() == "unknown"
    assert not [row for row in _issues(panel) if "daily limit" in row[4]]
    assert not _ashare_preticked(window, path)
    panel.market.setCurrentIndex(panel.market.findData("cn"))  # the user says: an A-share after all
    assert {"2000-04-24", "2008-10-13"} <= {row[2] for row in _issues(panel) if "daily limit" in row[4]}
    assert _ashare_preticked(window, path)
    again = DataPanel(window.palette_)  # the next session
    again.select(path)
    assert again.bars(path).market == "cn" and again.market.currentData() == "cn"
    again.deleteLater()
    panel.select("spdb")
    assert panel.market.currentData() == "cn" and _ashare_preticked(window, "spdb")


def test_every_bad_row_of_an_import_is_listed_with_its_date(window, tmp_path):
    panel = window.data_panel
    panel.import_file(_short_rows(tmp_path / "600000.txt", 24))
    rows = _issues(panel)
    days = pd.bdate_range("2024-01-02", periods=48)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("Error", str(i + 2), f"{days[i]:%Y-%m-%d}", "收盘") for i in range(1, 48, 2)]
    assert "24 bad rows" in panel.issues_title.text()


def _run(runner, run_id: str, modules: list[str], norm: float, losses: list[float]) -> None:
    runner.started.emit(RunStarted(run_id=run_id, kind="price", total_steps=len(losses)))
    for step, loss in enumerate(losses, 1):
        runner.stepped.emit(StepEvent(step=step, epoch=0, loss=loss, grad_norm=norm, lr=1e-3, samples_per_s=1.0,
                                      module_grad_norms={m: norm for m in modules}))


def test_a_new_run_starts_with_only_its_own_gradient_curves_and_modules(window):
    runner, panel = window.runner, window.training_panel
    _run(runner, "first", ["attn", "mlp"], 1000.0, [1.0] * 5)
    panel.redraw()
    panel.modules.findItems("attn", Qt.MatchFlag.MatchExactly)[0].setCheckState(Qt.CheckState.Checked)
    panel.redraw()
    _run(runner, "second", ["gru"], 0.01, [1.0] * 5)
    panel.redraw()
    assert [panel.modules.item(i).text() for i in range(panel.modules.count())] == ["total", "gru"]
    drawn = [item for item in panel.grad_plot.listDataItems() if item.isVisible()]
    assert drawn and max(np.nanmax(item.getData()[1]) for item in drawn) == 0.01


def test_the_best_checkpoint_star_sits_on_its_validation_point_in_log_scale(window):
    runner, panel = window.runner, window.training_panel
    _run(runner, "log", [], 1.0, list(np.linspace(0.6, 0.2, 20)))
    runner.evaluated.emit(EvalEvent(step=10, epoch=0, val_loss=0.3, is_best=False))
    runner.evaluated.emit(EvalEvent(step=20, epoch=0, val_loss=0.205, is_best=True))
    panel.log_y.setChecked(True)
    panel.redraw()
    star_y = panel.best_marker.getData()[1]
    assert len(star_y) == 1 and star_y[0] == panel.val_curve.getData()[1][-1] == math.log10(0.205)


def test_log_scale_loss_labels_do_not_overlap(window, qtbot):
    runner, panel = window.runner, window.training_panel
    _run(runner, "labels", [], 1.0, list(np.linspace(0.45, 0.2, 50)))
    panel.log_y.setChecked(True)
    panel.redraw()
    window.docks["trainingDock"].show()
    window.docks["trainingDock"].raise_()
    qtbot.waitUntil(lambda: panel.plots.isVisible())
    panel.loss_plot.vb.autoRange()
    panel.plots.grab()  # lays out and paints the axes
    axis = panel.loss_plot.getAxis("left")
    rects = [spec[0] for spec in axis.generateDrawSpecs(_painter(panel.plots))[2]]
    assert len(rects) >= 2
    assert not any(a.intersects(b) for i, a in enumerate(rects) for b in rects[i + 1:])


def _painter(widget):
    from PySide6.QtGui import QImage, QPainter

    image = QImage(widget.size(), QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    _painter.keep = (image, painter)  # the painter must outlive the draw specs
    return painter


def test_a_one_point_series_is_drawn_in_the_history(window, tmp_path):
    store = RunStore(tmp_path / "one.db")
    run = store.create_run("price", dataset="goog", fingerprint="f", config={}, seed=0, device="cpu")
    store.log_metrics(run, [(120, "val/loss", 0.42)])
    history = HistoryPanel(store, window.palette_)
    history.select([run])
    curve = history.compare_curves[0]
    assert len(curve.getData()[0]) == 1 and curve.opts["symbol"] is not None
    history.deleteLater()


def test_volume_bars_are_visible_at_every_zoom(window, qtbot):
    chart = PriceChart(window.palette_)
    chart.resize(1200, 700)
    chart.show()
    qtbot.waitExposed(chart)
    chart.set_bars(load_bars("spdb").frame, "SPDB")
    width = chart.volume_plot.vb.width()
    for bars_per_pixel in (0.9, 1.1, 1.4, 2.5):
        n = int(width * bars_per_pixel)
        chart.show_range(len(chart.frame) - n, len(chart.frame))
        image = chart.grab().toImage()
        rect = chart.volume_plot.vb.sceneBoundingRect().toRect().adjusted(2, 2, -2, -2)
        base = QColor(window.palette_.base).rgb() & 0xFFFFFF
        empty = [all(image.pixel(x, y) & 0xFFFFFF in (base, QColor(window.palette_.grid).rgb() & 0xFFFFFF)
                     for y in range(rect.bottom() - 3, rect.bottom() + 1))
                 for x in range(rect.left(), rect.right())]
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, empty, 0]))) if any(empty) else [0]
        assert max(runs[::2]) <= 3, f"{bars_per_pixel} bars a pixel: {max(runs[::2])} columns without a bar"
    chart.close()


def test_disabled_menu_items_look_disabled(window):
    menu = QMenu(window)
    enabled, disabled = QAction("Export signals…", menu), QAction("Export signals…", menu)
    disabled.setEnabled(False)
    menu.addActions([enabled, disabled])
    image = menu.grab().toImage()

    def brightest(action) -> int:
        rect = menu.actionGeometry(action)
        return max(QColor(image.pixel(x, y)).lightness() for x in range(rect.left(), rect.right())
                   for y in range(rect.top(), rect.bottom()))

    assert brightest(disabled) < brightest(enabled) - 40
    assert brightest(disabled) <= QColor(window.palette_.muted).lightness() + 5


def test_bundled_samples_keep_their_market_in_the_data_panel(window):
    for sample in list_samples():
        window.data_panel.select(sample.name)
        assert window.data_panel.market.currentData() == sample.market


# --- Open in Forecast on a run without a best checkpoint ----------------------------------------------

@pytest.fixture(scope="module")
def price_run(tmp_path_factory) -> tuple[RunStore, str]:
    """One tiny finished price run in a module-wide history."""
    store = RunStore(tmp_path_factory.mktemp("forecast") / "runs.db")
    for _event in train_price([SMALL_DATASET], model_cfg=TINY_PRICE, data_cfg=DATA, train_cfg=TRAIN, store=store):
        pass
    (run,) = [r["run_id"] for r in store.list_runs(kind="price", status="finished")]
    return store, run


@pytest.fixture
def forecast_window(make_window, price_run):
    return make_window(price_run[0])


def _cancelled_run(store: RunStore, checkpoint: dict | None) -> str:
    run = store.create_run("price", dataset=SMALL_DATASET, fingerprint="f", config={"sources": [SMALL_DATASET]},
                           seed=0, device="cpu")
    if checkpoint:
        store.add_checkpoint(run, checkpoint["path"], checkpoint["sha256"], 3, is_best=False)
    store.finish_run(run, "cancelled")
    return run


def test_open_in_forecast_on_a_cancelled_run_uses_its_last_checkpoint_and_says_so(forecast_window, price_run):
    (store, price), window = price_run, forecast_window
    panel = window.forecast_panel
    run = _cancelled_run(store, store.checkpoint(price, best=True))
    window.history_panel.refresh()
    window.history_panel.select([run])
    window.history_panel.buttons["forecast"].click()
    assert panel.model.currentData() == run and "last checkpoint (step 3)" in panel.model.currentText()
    assert panel.latest is not None and "last checkpoint" in panel.status.text()
    assert "last checkpoint" in window.statusBar().currentMessage()


def test_open_in_forecast_on_a_run_without_checkpoints_explains_why(forecast_window, price_run):
    (store, price), window = price_run, forecast_window
    panel = window.forecast_panel
    window.show_forecast(price)
    run = _cancelled_run(store, None)
    window.show_forecast(run)
    assert "no checkpoint" in panel.status.text() and "no checkpoint" in window.statusBar().currentMessage()
    assert panel.model.currentData() == price and panel.latest is not None  # the panel stays usable
