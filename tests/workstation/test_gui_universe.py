"""The data panel imports a universe in the background: progress, cancel, coverage, errors by file."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QTimer

from engine.data import load_bars
from engine.data.universe import DAY_DTYPE
from workstation.panels.data_panel import DataPanel
from workstation.theme import palette


def _vipdoc(root, n=50):
    """n synthetic-code .day files of real SPDB bars (records as TDX writes them), one of them broken."""
    frame = load_bars("spdb").frame.iloc[-300:]
    rec = np.zeros(len(frame), dtype=DAY_DTYPE)
    rec["date"] = frame.index.strftime("%Y%m%d").astype(np.uint32)
    for k in ("open", "high", "low", "close"):
        rec[k] = np.round(frame[k].to_numpy() * 100).astype(np.uint32)
    rec["amount"], rec["volume"] = frame["amount"].to_numpy(np.float32), frame["volume"].to_numpy().astype(np.uint32)
    folder = root / "sh" / "lday"
    folder.mkdir(parents=True)
    for i in range(n - 1):
        rec.tofile(folder / f"sh600{i:03d}.day")
    (folder / "sh601999.day").write_bytes(b"\x01" * 33)
    return root


@pytest.fixture
def panel(qtbot, settings):
    widget = DataPanel(palette("light"))
    qtbot.addWidget(widget)
    widget.resize(1200, 700)
    widget.show()
    yield widget
    widget.stop_import()


def test_vipdoc_of_fifty_files_imports_in_the_background(qtbot, panel, tmp_path):
    root = _vipdoc(tmp_path / "vipdoc")
    seen = []
    panel.universe_runner.progress_changed.connect(lambda done, total, _eta: seen.append((done, total)))
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    with qtbot.waitSignal(panel.universe_loaded, timeout=60_000) as loaded:
        panel.import_universe(str(root))
        assert panel.universe_progress.isVisible() and panel.universe_cancel.isVisible()
    timer.stop()
    universe = loaded.args[0]
    assert seen[-1] == (50, 50) and len(universe.tables) == 49 and ticks  # the event loop kept running
    group = panel.tree.currentItem()
    assert group.text(0) == "vipdoc" and group.childCount() == 49 and group.child(0).text(1) == "300"
    assert "49 instruments" in panel.details.text() and "1 file(s) not imported" in panel.issues_title.text()
    assert panel.issues.topLevelItem(0).text(3) == "sh601999.day"
    assert not panel.universe_progress.isVisible()
    panel.tree.setCurrentItem(group.child(0))
    assert panel.chart.frame is not None and len(panel.chart.frame) == 300
    assert (f"{root}:sh600000" in [s for _, s in panel.sources()])


def test_cancel_adds_nothing(qtbot, panel, tmp_path):
    root = _vipdoc(tmp_path / "vipdoc", n=400)
    with qtbot.waitSignal(panel.universe_runner.progressed, timeout=60_000):
        panel.import_universe(str(root))
    panel.universe_cancel.click()
    with qtbot.waitSignal(panel.universe_runner.finished, timeout=60_000) as done:
        pass
    assert done.args[0].cancelled and "cancelled" in panel.issues_title.text()
    assert panel.imported_group.childCount() == 0 and panel.imported_universes() == []


def test_bundled_universe_lists_twelve_and_shows_coverage(qtbot, panel, tmp_path):
    group = next(g for g in panel._universe_groups() if g.data(0, 0x0100) == "us12")
    assert group.childCount() == 12
    with qtbot.waitSignal(panel.universe_loaded, timeout=60_000):
        panel.tree.setCurrentItem(group)
    assert "12 instruments" in panel.details.text() and "1990-01-02 → 2022-12-28" in panel.details.text()
    assert "open" in panel.details.text() and panel.issues_title.text() == "Import problems: none"
    panel.tree.expandItem(group)
    panel.tree.setCurrentItem(group)
    panel.grab().save(str(tmp_path / "universe.png"))


def test_a_close_only_member_draws_a_close_line_without_warnings(qtbot):
    import warnings

    from workstation.charts import PriceChart

    chart = PriceChart(palette("light"))
    qtbot.addWidget(chart)
    chart.resize(800, 400)
    chart.show()
    member = load_bars("us12:JPM")  # close only
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's All-NaN slice warnings were raised here
        chart.set_bars(member.frame, "us12:JPM", member.market)
        chart.set_log_y(True)
        chart.grab()
    x, y = chart.close_line.getData()
    assert not chart.has_candles() and len(x) == len(member.frame)
    assert np.allclose(y, np.log10(member.frame["close"].to_numpy()))
    lo, hi = chart.price_plot.vb.viewRange()[1]
    assert lo < y[-1] < hi  # the view is fitted to the closes in view
    chart.set_bars(load_bars("spdb").frame, "spdb", "cn")
    assert chart.has_candles() and len(chart.close_line.getData()[0] or []) == 0
