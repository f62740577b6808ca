"""The Universe panel (issue 14): Run > Evaluate on a universe… takes the History selection's run and the Data
selection's universe, evaluates off the UI thread, and the coverage and comparison tables, the rank IC by horizon
bars and the rolling 60-day rank IC curve are the evaluate report's numbers (the CLI's report for the same run)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import cli
from tests.engine.cli.test_universe_evaluate_cli import planted_returns
from tests.engine.helpers import TINY_PRICE_ARGS
from workstation.panels.universe_panel import ROLLING_DAYS, _fmt

N, DAYS = 7, 800


def _cli(db: Path, *args: str) -> dict:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli.main(["--db", str(db), "--json", *args])
    assert code == 0, buf.getvalue()
    return json.loads(buf.getvalue())


@pytest.fixture
def universe_run(window, tmp_path):
    """A synthetic 7-instrument wide close table with a planted 5-day reversal and a 4-step tiny run on it."""
    dates = pd.bdate_range("2015-01-01", periods=DAYS)
    closes = 50 * np.exp(np.cumsum(planted_returns(N, DAYS, 5), axis=0))
    table = pd.DataFrame(closes, index=pd.Index(dates, name="Date"), columns=[f"S{k}" for k in range(N)])
    path = tmp_path / "planted.csv"
    table.to_csv(path)
    run = _cli(window.store.path, "train-price", "--data", str(path), "--preset", "tiny", *TINY_PRICE_ARGS, "--context",
               "equal_weight", "--target", "excess", "--max-steps", "4", "--batch-size", "16", "--seed", "2",
               "--train-end", f"{dates[450]:%Y-%m-%d}", "--val-end", f"{dates[600]:%Y-%m-%d}")
    return str(path), run["run_id"]


def test_universe_action_fills_the_panel_with_the_reports_numbers(qtbot, window, universe_run, tmp_path):
    path, run_id = universe_run
    panel = window.universe_panel
    window.actions_["evaluate_universe"].trigger()  # nothing selected: refused with the reason, no job
    assert not panel.runner.is_running() and "History" in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.data_panel.universe_loaded, timeout=60_000):
        window.data_panel.import_universe(path)
    window.history_panel.refresh()
    window.history_panel.select([run_id])
    with qtbot.waitSignal(panel.reported, timeout=300_000) as shown:
        window.actions_["evaluate_universe"].trigger()
        assert window.docks["universeDock"].isVisible()
    report = shown.args[0]
    cli_report = _cli(window.store.path, "evaluate", "--run", run_id)
    section = report.cross_section
    assert json.loads(json.dumps(report.to_json()))["cross_section"]["horizons"] == cli_report["cross_section"][
        "horizons"]

    assert panel.coverage.rowCount() == N == len(report.instruments)
    for row in range(N):
        name = panel.coverage.item(row, 0).text()
        info = report.instruments[name]
        assert [panel.coverage.item(row, c).text() for c in (1, 2, 3)] == [*info["period"],
                                                                          str(info["horizons"][0]["days"])]

    expected = [("model", section["horizons"][0]), ("LightGBM (hand-made factors)",
                                                    section["lightgbm"]["horizons"][0]),
                *((name, f["horizons"][0]) for name, f in section["factors"].items())]
    assert panel.comparison.rowCount() == len(expected) == 5
    for row, (name, h1) in enumerate(expected):
        cells = [panel.comparison.item(row, c).text() for c in range(5)]
        assert cells == [name, _fmt(h1["rank_ic"]), _fmt(h1["ic"]), _fmt(h1["icir"]),
                         _fmt(h1["top_minus_bottom"], "+.2%")]

    x, height = panel.bars.opts["x"], panel.bars.opts["height"]
    assert [r["h"] for r in section["horizons"]] == list(range(1, 8))
    np.testing.assert_allclose(x + 0.2, range(1, 8))
    np.testing.assert_allclose(height, [r["rank_ic"] for r in section["horizons"]])
    np.testing.assert_allclose(panel.lgbm_bars.opts["height"], [r["rank_ic"] for r in section["lightgbm"]["horizons"]])

    daily = np.array([np.nan if v is None else v for v in section["daily"]["rank_ic"]["1"]], dtype=float)
    _, y = panel.rolling_curve.getData()
    assert len(y) == len(daily) == len(section["daily"]["dates"])
    k = ROLLING_DAYS
    np.testing.assert_allclose(y[k - 1:], pd.Series(daily).rolling(k, min_periods=k // 2).mean().to_numpy()[k - 1:])

    low, high = panel.rolling.getPlotItem().getViewBox().viewRange()[1]  # the y axis fits the curve
    span = max(np.nanmax(y), 0) - min(np.nanmin(y), 0)  # the curve and the zero line, with a margin
    assert low <= min(np.nanmin(y), 0) and high >= max(np.nanmax(y), 0) and high - low < 1.3 * span
    window.resize(1400, 860)
    window.docks["universeDock"].raise_()
    qtbot.wait(50)  # let the dock lay out before the grab
    # drawn here but never into docs/: the README's shot is the real us12 run (scripts/universe_panel_screenshot.py)
    assert panel.grab().save(str(tmp_path / "universe_panel.png"))
