"""The train wizard's timeline: one bar per chosen instrument, its training / validation / test parts
cut at the dates the engine's price training resolves; typed cut dates reach the run's DataConfig."""

from __future__ import annotations

import pandas as pd
from PySide6.QtCore import Qt

from engine.config import DataConfig, PriceModelConfig, TrainConfig, override
from engine.data import load_bars
from engine.events import run_to_end
from engine.training.price import price_cut_dates, price_windows, train_price
from tests.workstation.helpers import screenshot_path
from workstation.panels.backtest_panels import BacktestView
from workstation.panels.history_details import run_details
from workstation.wizards.backtest_wizard import BacktestWizard
from workstation.wizards.train_wizard import TrainWizard

TINY = override(PriceModelConfig(), d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16, qk_nope_head_dim=8,
                qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64)


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


def test_timeline_regions_are_the_engines_cut_dates(window, qtbot, tmp_path):
    names = ("spx", "sse", "goog")
    wizard = _wizard(window, names)
    page = wizard.data_page
    qtbot.waitUntil(lambda: len(page.timeline_parts) == len(page.checked()) >= len(names))
    assert page.timeline_parts == _expected(page)
    assert any(set(parts) == {"train", "val", "test"} for parts in page.timeline_parts.values())
    wizard.resize(900, 640)
    wizard.show()
    qtbot.waitExposed(wizard)
    wizard.grab().save(str(screenshot_path("train_wizard_split.png", tmp_path)))
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
    val_ends = [parts["val"][1] for parts in page.timeline_parts.values() if "val" in parts]
    assert val_ends and max(val_ends) <= pd.Timestamp("2017-12-29")
    page.train_end.setText("June")
    assert not page.validatePage() and "not a date" in page.error.text()
    wizard.reject()


def _price_run(store) -> str:
    """A tiny SPX run cut at 2015-06-30 / 2016-12-30: GOOG's bundled bars (to 2013) have no test days."""
    final = run_to_end(train_price(["spx"], model_cfg=TINY,
                                   data_cfg=DataConfig(start="2010-01-01", train_end="2015-06-30",
                                                       val_end="2016-12-30"),
                                   train_cfg=TrainConfig(epochs=1, max_steps=2, batch_size=16, precision="fp32",
                                                         device="cpu"), store=store))
    assert final.status == "finished", final.error
    return final.run_id


def test_backtest_wizard_explains_missing_test_days_and_marks_in_sample(window, qtbot):
    run_id = _price_run(window.store)
    wizard = BacktestWizard(window.store, window.data_panel.sources(), window.data_panel.bars, preselect=run_id)
    wizard.show()
    qtbot.waitExposed(wizard)
    wizard.next()
    page = wizard.period_page
    test_start = wizard.source().cuts.test_start
    page.dataset.setCurrentIndex(page.dataset.findData("spx"))
    assert page.period()[0] >= test_start and not page.warning.isVisible()
    page.start.setDate(page.start.date().addYears(-3))
    assert page.warning.isVisible() and "in-sample" in page.warning.text()
    page.dataset.setCurrentIndex(page.dataset.findData("goog"))
    qtbot.waitUntil(lambda: "no days on or after the model's test start" in page.error.text())
    assert test_start in page.error.text()
    wizard.reject()
    details = run_details(window.store.get_run(run_id), window.store.checkpoints(run_id))
    assert "2015-06-30" in details and "Split" in details


def test_history_details_and_backtest_title_say_where_the_days_came_from():
    record = {"run_id": "strategy-1", "kind": "strategy", "status": "finished", "dataset": "spx", "metrics": {},
              "config": {"split": {"train": ["2016-01-04", "2016-06-30"], "val": ["2016-07-01", "2016-12-30"]},
                         "features_from": [{"price_train_end": "2015-06-30", "encoded": ["2015-07-01", "2016-12-30"]}],
                         "ensemble": ["strategy-a1", "strategy-b2"],
                         "seeds": [{"run_id": "strategy-a1", "seed": 0}, {"run_id": "strategy-b2", "seed": 1}]}}
    details = run_details(record, [])
    assert "2015-07-01 → 2016-12-30" in details and "2015-06-30" in details
    assert "Seed ensemble" in details and "#a1" in details and "seed 1" in details
    config = {"instrument": "SPX", "start": "2014-01-02", "end": "2019-12-31"}
    assert "in-sample" not in BacktestView("b", {"config": config, "dataset": "spx"}, None, None, "us").title
    assert BacktestView("b", {"config": {**config, "in_sample": True}, "dataset": "spx"}, None, None,
                        "us").title.endswith("· in-sample")
