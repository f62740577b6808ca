"""Issue 18 friction in the forecast panel: whole dates, a layout that stays put when a day is
picked, and the naive "tomorrow = today" error beside the model's for every horizon."""

from __future__ import annotations

import numpy as np

from engine.config import DataConfig, PriceModelConfig, TrainConfig
from engine.events import run_to_end
from engine.training.price import train_price
from workstation.panels.forecast_panel import COLUMNS

TINY = PriceModelConfig(d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16, qk_nope_head_dim=8,
                        qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64, dropout=0.0)
FAST = TrainConfig(max_steps=3, batch_size=16, warmup_steps=1, seed=7, precision="fp32", device="cpu")


def test_picking_a_day_shows_the_naive_error_and_moves_nothing(window, qtbot):
    done = run_to_end(train_price(["goog"], model_cfg=TINY, data_cfg=DataConfig(start="2008-01-01"),
                                  train_cfg=FAST, store=window.store))
    assert done.status == "finished", done.error
    panel = window.forecast_panel
    window.show_forecast(done.run_id)
    window.docks["forecastDock"].raise_()
    qtbot.waitUntil(lambda: panel.latest is not None and panel.isVisible())
    geometry = [(w.objectName() or type(w).__name__, w.geometry())
                for w in (panel.chart, panel.table, panel.table_title, panel.status)]
    ws = panel.ws
    index = len(ws.dates) - 300
    panel.pick(index)
    qtbot.wait(50)  # one pass of the event loop: layouts settle
    assert [(n, w.geometry()) for (n, _), w in zip(geometry, (panel.chart, panel.table, panel.table_title,
                                                              panel.status))] == geometry
    naive = COLUMNS.index("Naive error")
    table = panel.table
    actual = ws.close[index + 1:index + 8]
    expected = (ws.close[index] - actual) / actual
    shown = [float(table.item(h, naive).text().rstrip("%")) / 100 for h in range(7)]
    np.testing.assert_allclose(shown, expected, atol=5e-5)
    assert table.horizontalHeaderItem(naive).toolTip().startswith("The naive forecast")
    assert "naive" in panel.table_title.text()
    date = table.item(0, COLUMNS.index("Date")).text()
    assert date == f"{ws.dates[index + 1]:%Y-%m-%d}"
    assert table.columnWidth(1) >= table.fontMetrics().horizontalAdvance(date) + 8  # never elided
