"""The forecast-quality table: the evaluate job's numbers, per instrument and pooled, in the forecast
panel (Evaluate button, off the UI thread) and in the training panel after a price run finishes."""

from __future__ import annotations

import math

import pytest
from PySide6.QtCore import Qt

from engine.config import DataConfig, TrainConfig
from engine.events import run_to_end
from engine.jobs.evaluate import EvaluationReport, evaluate_job
from engine.store import RunStore
from tests.engine.helpers import finished_price_run
from tests.workstation.helpers import SHORT_PERIOD, SMALL_DATASET, start_training
from workstation.panels.evaluation_table import COLUMNS, EvaluationView

pytestmark = pytest.mark.slow
JOB_TIMEOUT_MS = 120_000


def cells(view: EvaluationView) -> list[list[str]]:
    return [[view.table.item(r, c).text() for c in range(view.table.columnCount())]
            for r in range(view.table.rowCount())]


def expected_cells(rows: list[dict]) -> list[list[str]]:
    def text(value, fmt):
        return "n/a" if isinstance(value, float) and not math.isfinite(value) else format(value, fmt)
    return [[text(row[key], fmt) for _header, key, fmt, _tip in COLUMNS] for row in rows]


def horizons(ic: float, days: int) -> list[dict]:
    return [{"h": h, "days": days - h, "mae_ratio": 0.99, "ic": ic, "rank_ic": float("nan"),
             "hit_rate": 0.5, "up_rate": 0.55} for h in range(1, 8)]


def test_table_shows_pooled_first_then_each_instrument(qtbot, tmp_path):
    view = EvaluationView(RunStore(tmp_path / "runs.db"))
    qtbot.addWidget(view)
    report = EvaluationReport("finished", "price-x", "ab" * 32, ["a", "b"],
                              {"A": {"dataset": "a", "period": ["2020-01-02", "2020-12-30"], "in_sample": False,
                                     "horizons": horizons(0.1, 200)},
                               "B": {"dataset": "b", "period": ["2019-01-02", "2020-12-30"], "in_sample": True,
                                     "horizons": horizons(-0.2, 300)}},
                              {"horizons": horizons(-0.05, 500)})
    with qtbot.waitSignal(view.reported):
        view.show_report(report)
    assert [view.instrument.itemText(i) for i in range(view.instrument.count())] == ["Pooled (2)", "A", "B"]
    assert cells(view) == expected_cells(report.pooled["horizons"])
    assert "1 of them in-sample" in view.note.text()
    view.instrument.setCurrentIndex(2)
    assert cells(view) == expected_cells(report.instruments["B"]["horizons"])
    assert cells(view)[0][:4] == ["1", "299", "0.990", "-0.200"] and cells(view)[0][4] == "n/a"
    assert "in-sample" in view.note.text() and "2019-01-02" in view.note.text()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    store = RunStore(tmp_path_factory.mktemp("evaluation") / "runs.db")
    price = finished_price_run(store, [SMALL_DATASET], data_cfg=DataConfig(start=SHORT_PERIOD[0], end=SHORT_PERIOD[1]),
                               train_cfg=TrainConfig(epochs=1, max_steps=6, batch_size=16, eval_every=3,
                                                     precision="fp32", device="cpu"))
    return {"store": store, "price": price}


@pytest.fixture
def window(make_window, trained):
    return make_window(trained["store"], size=(1400, 900), join_ms=JOB_TIMEOUT_MS)


def test_forecast_panel_evaluates_the_loaded_run_on_the_dataset_in_the_background(window, qtbot, trained):
    window.show_forecast(trained["price"])
    view = window.forecast_panel.evaluation
    assert window.forecast_panel.dataset.currentData() == SMALL_DATASET
    assert view.button.isEnabled() and view.report is None
    with qtbot.waitSignal(view.reported, timeout=JOB_TIMEOUT_MS) as got:
        qtbot.mouseClick(view.button, Qt.MouseButton.LeftButton)
        assert view.runner.is_running()  # off the UI thread
    expected = run_to_end(evaluate_job(trained["price"], [SMALL_DATASET], store=trained["store"]))
    assert got.args[0].instruments == expected.instruments
    assert view.instrument.currentText() == "Google (GOOG)"
    assert cells(view) == expected_cells(expected.instruments["Google (GOOG)"]["horizons"])
    period = expected.instruments["Google (GOOG)"]["period"]
    assert period[0] in view.note.text() and "out of sample" in view.note.text()


def test_choosing_another_dataset_clears_the_stale_table(window, qtbot, trained):
    window.show_forecast(trained["price"])
    panel, view = window.forecast_panel, window.forecast_panel.evaluation
    with qtbot.waitSignal(view.reported, timeout=JOB_TIMEOUT_MS):
        view.button.click()
    panel.dataset.setCurrentIndex(panel.dataset.findData("spx"))
    assert view.report is None and view.table.item(0, 0) is None and "Press Evaluate" in view.note.text()


def test_training_panel_shows_the_evaluation_after_a_price_run_finishes(window, qtbot):
    view = window.training_panel.evaluation
    with qtbot.waitSignal(view.reported, timeout=JOB_TIMEOUT_MS) as got:
        start_training(window, max_steps=4)
    report = got.args[0]
    assert report.run_id == window.training_panel.run_id and report.datasets == [SMALL_DATASET]
    assert view.instrument.currentText() == "Google (GOOG)"
    assert cells(view) == expected_cells(report.instruments["Google (GOOG)"]["horizons"])
