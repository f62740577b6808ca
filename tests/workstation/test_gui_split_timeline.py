"""The train wizard's timeline: one bar per chosen instrument, its training / validation / test parts
cut at the dates the engine's price training resolves; typed cut dates reach the run's DataConfig."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PySide6.QtCore import Qt

from engine.data import load_bars
from engine.training.price import price_cut_dates, price_windows
from workstation.wizards.train_wizard import TrainWizard

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _wizard(window, names: tuple[str, ...]) -> TrainWizard:
    wizard = TrainWizard(window.data_panel.sources(), window.data_panel.bars, window.store, window.palette_)
    page = wizard.data_page
    for i in range(page.datasets.count()):
        item = page.datasets.item(i)
        if item.data(Qt.ItemDataRole.UserRole) in names:
            item.setCheckState(Qt.CheckState.Checked)
    return wizard


def _expected(page) -> dict[str, dict[str, tuple[pd.Timestamp, pd.Timestamp]]]:
    """Every checked instrument (the data panel's dataset comes checked too), cut as training cuts."""
    cfg = page.data_config()
    tables = [load_bars(n) for n in page.checked()]
    cuts = price_cut_dates(price_windows(tables, cfg), cfg)
    out = {}
    for t in tables:
        days = t.frame.loc[cfg.start:cfg.end].index
        train, val = days[days <= cuts.train_end], days[(days > cuts.train_end) & (days <= cuts.val_end)]
        test = days[days > cuts.val_end]
        out[t.instrument] = {k: (v[0], v[-1]) for k, v in (("train", train), ("val", val), ("test", test)) if len(v)}
    return out


def test_timeline_regions_are_the_engines_cut_dates(window, qtbot):
    names = ("spx", "sse", "goog")
    wizard = _wizard(window, names)
    page = wizard.data_page
    qtbot.waitUntil(lambda: len(page.timeline_parts) == len(page.checked()) >= len(names))
    assert page.timeline_parts == _expected(page)
    assert any(set(parts) == {"train", "val", "test"} for parts in page.timeline_parts.values())
    wizard.resize(900, 640)
    wizard.show()
    qtbot.waitExposed(wizard)
    SHOTS.mkdir(parents=True, exist_ok=True)
    wizard.grab().save(str(SHOTS / "train_wizard_split.png"))
    wizard.reject()


def test_typed_cut_dates_move_the_timeline_and_reach_the_run(window, qtbot):
    names = ("spx", "goog")
    wizard = _wizard(window, names)
    page = wizard.data_page
    page.train_end.setText("2015-06-30")
    page.val_end.setText("2017-12-29")
    page.train_end.editingFinished.emit()
    qtbot.waitUntil(lambda: all(parts["train"][1] <= pd.Timestamp("2015-06-30")
                                for parts in page.timeline_parts.values()))
    cfg = page.data_config()
    assert (cfg.train_end, cfg.val_end) == ("2015-06-30", "2017-12-29")
    assert page.timeline_parts == _expected(page)
    assert max(parts["val"][1] for parts in page.timeline_parts.values() if "val" in parts) <= pd.Timestamp("2017-12-29")
    page.train_end.setText("June")
    assert not page.validatePage() and "not a date" in page.error.text()
    wizard.reject()
