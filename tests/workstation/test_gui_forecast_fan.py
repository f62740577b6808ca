"""Issue 13 item 4 in the GUI: the forecast panel's fan of 50/80/90 % bands (edges made once, moved by
setData on a pick), its reliability plot read from the evaluate report, and the training panel's
validation pinball and coverage curves from the EvalEvents of a real run."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt

from engine.config import QUANTILES, DataConfig, PriceModelConfig, TrainConfig
from engine.evaluation import BANDS
from engine.events import run_to_end
from engine.forecast import forecast_quantiles
from engine.training.price import train_price
from tests.workstation.helpers import start_training
from workstation.panels.forecast_panel import RELIABILITY_HORIZONS

pytestmark = pytest.mark.slow
JOB_TIMEOUT_MS = 120_000
TINY = PriceModelConfig(d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16, qk_nope_head_dim=8,
                        qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64, dropout=0.0)
FAST = TrainConfig(max_steps=3, batch_size=16, warmup_steps=1, seed=7, precision="fp32", device="cpu")


def train(window, head: str = "quantile") -> str:
    model = PriceModelConfig(**{**TINY.__dict__, "head": head})
    done = run_to_end(train_price(["goog"], model_cfg=model, data_cfg=DataConfig(start="2008-01-01"),
                                  train_cfg=FAST, store=window.store))
    assert done.status == "finished", done.error
    return done.run_id


def size(item: pg.PlotDataItem | pg.PlotCurveItem) -> int:
    """Points a curve holds (getData gives None for an emptied one)."""
    x = item.getData()[0]
    return 0 if x is None else len(x)


def fills(panel) -> list[pg.FillBetweenItem]:
    return [item for item in panel.chart.price_plot.items if isinstance(item, pg.FillBetweenItem)]


def shown(window, run_id: str):
    panel = window.forecast_panel
    window.show_forecast(run_id)
    window.docks["forecastDock"].raise_()
    return panel


def test_fan_band_edges_are_the_forecasts_quantile_prices_and_follow_a_pick(window, qtbot):
    panel = shown(window, train(window))
    qtbot.waitUntil(lambda: panel.latest is not None)
    ws, last = panel.ws, len(panel.ws.dates) - 1
    items = fills(panel)
    assert len(items) == len(BANDS)
    for index in (last, len(ws.dates) - 300):
        panel.pick(None if index == last else index)
        q = forecast_quantiles(panel.loaded(), ws, np.array([index]))  # computed here, beside the panel's
        for band, (lower, upper) in panel.fan.items():
            for edge, level in zip((lower, upper), BANDS[band]):
                x, y = edge.getData()
                np.testing.assert_array_equal(x, index + np.arange(8))
                assert y[0] == ws.close[index]
                np.testing.assert_allclose(y[1:], q.quantile_prices[0, :, QUANTILES.index(level)], rtol=1e-12)
            assert (lower.getData()[1][1:] < upper.getData()[1][1:]).all()
    assert fills(panel) == items  # the same fills, moved by setData: nothing rebuilt per pick
    assert all(not item.path().isEmpty() for item in items)


def test_a_point_head_draws_no_fan(window, qtbot):
    panel = shown(window, train(window, head="point"))
    qtbot.waitUntil(lambda: panel.latest is not None)
    assert panel.latest.quantiles == {}
    assert all(size(edge) == 0 for pair in panel.fan.values() for edge in pair)


def test_reliability_points_are_the_evaluate_reports_coverage(window, qtbot):
    panel = shown(window, train(window))
    view = panel.evaluation
    assert all(size(curve) == 0 for curve in panel.reliability.points.values())
    with qtbot.waitSignal(view.reported, timeout=JOB_TIMEOUT_MS) as got:
        qtbot.mouseClick(view.button, Qt.MouseButton.LeftButton)
    rows = got.args[0].instruments[view.instrument.currentData()]["horizons"]
    for h in RELIABILITY_HORIZONS:
        x, y = panel.reliability.points[h].getData()
        coverage = rows[h - 1]["coverage"]
        np.testing.assert_allclose(x, [float(band) for band in BANDS])
        np.testing.assert_allclose(y, [coverage[band] for band in BANDS])
    panel.dataset.setCurrentIndex(panel.dataset.findData("spx"))  # another dataset: the stale points go
    assert all(size(curve) == 0 for curve in panel.reliability.points.values())


def test_training_panel_plots_validation_pinball_and_coverage_from_eval_events(window, qtbot):
    evaluations: list = []
    window.runner.evaluated.connect(evaluations.append)
    start_training(window, max_steps=6)
    with qtbot.waitSignal(window.runner.finished, timeout=JOB_TIMEOUT_MS) as done:
        pass
    assert done.args[0].status == "finished", done.args[0].error
    panel = window.training_panel
    assert evaluations and all("pinball" in e.metrics for e in evaluations)  # the wizard's default: quantiles
    x, y = panel.pinball_curve.getData()
    assert list(x) == [e.step for e in evaluations]
    np.testing.assert_allclose(y, [e.metrics["pinball"] for e in evaluations])
    for pct, curve in panel.coverage_curves.items():
        np.testing.assert_allclose(curve.getData()[1], [e.metrics[f"coverage_{pct}"] for e in evaluations])
