"""After a crash, the next start lists the interrupted runs and offers Resume (issue 8)."""

from __future__ import annotations

import sqlite3

from PySide6.QtWidgets import QApplication

from engine.config import DataConfig, PriceModelConfig, TrainConfig
from engine.events import CancelToken, StepEvent
from engine.store import RunStore
from engine.training.price import train_price
from workstation import theme
from workstation.main_window import MainWindow

TINY = PriceModelConfig(d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16, qk_nope_head_dim=8,
                        qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64)
DATA = DataConfig(start="2009-01-01")
TRAIN = TrainConfig(max_steps=8, batch_size=16, warmup_steps=2, precision="fp32", seed=2)


def crashed_run(path) -> str:
    """A run that wrote a checkpoint, then 'died': left running by a process that no longer exists."""
    store = RunStore(path)
    token = CancelToken()
    run_id = ""
    for event in train_price(["goog"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN, store=store,
                             cancel=token):
        run_id = getattr(event, "run_id", run_id)
        if isinstance(event, StepEvent) and event.step == 3:
            token.cancel()  # writes last.pt, as a periodic checkpoint would have
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE runs SET status = 'running', pid = 999999999, ended = NULL WHERE run_id = ?",
                   [run_id])
    return run_id


def open_window(qtbot, path) -> MainWindow:
    theme.apply(QApplication.instance())
    win = MainWindow(RunStore(path))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


def test_next_start_offers_resume_and_resuming_finishes_the_run(qtbot, settings, isolated_home):
    path = isolated_home / "runs.db"
    run_id = crashed_run(path)
    win = open_window(qtbot, path)
    qtbot.waitUntil(lambda: win.resume_prompt is not None and win.resume_prompt.isVisible())
    prompt = win.resume_prompt
    assert prompt.list.count() == 1 and run_id in prompt.list.item(0).text()
    with qtbot.waitSignal(win.runner.finished, timeout=120_000):
        prompt.resume_button.click()
    run = win.store.get_run(run_id)
    assert run["status"] == "finished" and run["step"] == TRAIN.max_steps


def test_not_now_stops_offering_those_runs(qtbot, settings, isolated_home):
    path = isolated_home / "runs.db"
    crashed_run(path)
    win = open_window(qtbot, path)
    qtbot.waitUntil(lambda: win.resume_prompt is not None and win.resume_prompt.isVisible())
    win.resume_prompt.later_button.click()
    assert not win.resume_prompt.isVisible() and not win.runner.is_running()
    again = open_window(qtbot, path)
    again.offer_resume()  # what the start-up timer runs: nothing left to offer
    assert again.resume_prompt is None
