"""Issue 18, defect 2: a strategy run shows up at once and reports its feature encoding (count and
ETA) in the training panel and the status bar, and can be cancelled while it encodes."""

from __future__ import annotations

import pytest

from engine.config import DataConfig, PriceModelConfig, StrategyLossConfig, StrategyModelConfig, TrainConfig
from engine.events import Progress, RunStarted, run_to_end
from engine.training.price import train_price
from workstation.wizards.train_wizard import TrainRequest

TINY = PriceModelConfig(d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16, qk_nope_head_dim=8,
                        qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64, dropout=0.0)
FAST = TrainConfig(max_steps=3, batch_size=16, warmup_steps=1, seed=5, precision="fp32", device="cpu")


@pytest.fixture
def price_run(window):
    done = run_to_end(train_price(["goog"], model_cfg=TINY, data_cfg=DataConfig(), train_cfg=FAST,
                                  store=window.store))
    assert done.status == "finished", done.error
    return done.run_id


def strategy_request(price_run: str) -> TrainRequest:
    return TrainRequest([], "strategy", price_run, DataConfig(), TINY, StrategyModelConfig(state_dim=8),
                        StrategyLossConfig(), FAST)


def test_the_panel_switches_to_the_new_run_and_shows_the_encoding_with_its_eta(window, qtbot, price_run):
    panel, runner = window.training_panel, window.runner
    seen: list[tuple] = []
    runner.started.connect(lambda e: seen.append(("started", e.run_id, panel.title.text())))
    runner.progress_changed.connect(lambda done, total, eta: seen.append(
        ("count", panel.phase.text(), panel.speed.text(), panel.eta.text(), window.status.job_label.text()))
        if panel.phase.text() else None)
    with qtbot.waitSignal(runner.finished, timeout=120_000) as finished:
        window.start_training(strategy_request(price_run))
    assert finished.args[0].status == "finished", finished.args[0].error
    kinds = [s[0] for s in seen]
    assert kinds[0] == "started" and "count" in kinds  # the run is on screen before its encoding
    run_id = seen[0][1]
    assert run_id in seen[0][2] and run_id.startswith("strategy")
    counts = [s for s in seen if s[0] == "count"]
    phase, speed, eta, status = counts[-1][1:]
    assert phase.startswith("Encoding features of Google (GOOG) (1/1)")
    done, total = (int(x.replace(",", "")) for x in speed.split(" / "))
    assert done == total > 256 and eta.startswith("ETA ")
    assert "Encoding features" in status and status.startswith("Training strategy")
    assert panel.phase.text() == "" and window.status.job_label.text().endswith("finished")


def test_cancel_while_encoding_records_the_run_cancelled(window, qtbot, price_run):
    panel, runner = window.training_panel, window.runner
    started: list[RunStarted] = []
    runner.started.connect(started.append)

    def cancel_once_encoding(event: Progress) -> None:
        if event.message.startswith("Encoding features"):
            runner.cancel()

    runner.progressed.connect(cancel_once_encoding)
    with qtbot.waitSignal(runner.finished, timeout=120_000) as finished:
        window.start_training(strategy_request(price_run))
    assert finished.args[0].status == "cancelled"
    assert window.store.get_run(started[0].run_id)["status"] == "cancelled"
    assert "Cancelled" in panel.banner.text() and "recorded as cancelled" in panel.banner.text()
