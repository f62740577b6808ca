"""The Explain panel follows the day picked in the Forecast panel: a tiny trained run's attention strip
aligned to the window's dates, layer/head/rollout selectors that change the strip, the attribution heat
map (day x feature), contributions in words and the regime voters; computed off the UI thread."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from engine import cli
from tests.workstation.helpers import screenshot_path

TINY = ["--set", "d_model=32", "--set", "n_layers=2", "--set", "n_heads=2", "--set", "kv_lora_rank=16",
        "--set", "qk_nope_head_dim=8", "--set", "qk_rope_head_dim=8", "--set", "v_head_dim=8",
        "--set", "ffn_hidden=64"]


@pytest.fixture
def run_id(window):
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli.main(["--db", str(window.store.path), "--json", "train-price", "--data", "spx", "--start",
                         "2011-01-01", "--preset", "tiny", *TINY, "--max-steps", "8", "--batch-size", "16"])
    assert code == 0
    return json.loads(buf.getvalue())["run_id"]


def test_picking_a_forecast_day_explains_it_off_the_ui_thread(qtbot, window, run_id, tmp_path):
    window.forecast_panel.dataset.addItem("spx", "spx")
    window.forecast_panel.set_model(run_id)
    panel = window.explain_panel
    ws = window.forecast_panel.ws
    day = int(ws.dates.searchsorted(np.datetime64("2016-08-01")))
    with qtbot.waitSignal(panel.shown, timeout=60_000) as shown:
        window.forecast_panel.pick(day)
    ex = shown.args[0]
    assert ex.asof == f"{ws.dates[day]:%Y-%m-%d}" and ex.dates[-1] == ex.asof and len(ex.dates) == 180
    window.docks["explainDock"].show()
    window.docks["explainDock"].raise_()
    strip = panel.strip.image
    assert strip.shape == (180, 1)
    np.testing.assert_allclose(strip.sum(), 1.0, rtol=1e-6)  # the mean over layers and heads still sums to 1
    assert panel.price_plot.getAxis("bottom").dates[-1] == ws.dates[day]  # aligned to the window's dates
    panel.layer.setCurrentIndex(2)  # layer 2
    panel.head.setCurrentIndex(1)  # head 1
    np.testing.assert_allclose(panel.strip.image[:, 0], ex.attention[1, 0])
    panel.rollout.setChecked(True)
    np.testing.assert_allclose(panel.strip.image[:, 0], ex.rollout)
    assert not panel.layer.isEnabled()
    assert panel.heat.image.shape == (180, len(ex.forecast.features))
    assert "pushed the 7-day median" in panel.top_text.text()
    assert panel.voters.rowCount() == 3 and panel.regime_title.text().startswith("<b>Regime:")
    window.resize(1500, 900)
    QApplication.processEvents()  # lay the resized window out before the grab
    assert window.grab().save(str(screenshot_path("explain_panel.png", tmp_path)))


def test_a_day_without_history_says_why(qtbot, window, run_id):
    panel = window.explain_panel
    with qtbot.waitSignal(panel.message, timeout=60_000) as said:
        panel.explain(run_id, "spx", "1999-02-01")
    assert "enough history" in said.args[0]
