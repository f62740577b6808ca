"""Long phases report progress and can be cancelled (issue 18): a strategy run is recorded and
announced before the price network encodes its features; backtests report each batch encoded."""

from __future__ import annotations

import pytest

from engine.config import BacktestConfig, DataConfig, StrategyLossConfig, StrategyModelConfig, TrainConfig, override
from engine.events import CancelToken, Finished, Progress, RunStarted, StepEvent, run_to_end
from engine.jobs.backtest import backtest_job
from engine.store import RunStore
from engine.training.strategy import train_strategy
from tests.engine.helpers import TINY_PRICE, finished_price_run

TINY = override(TINY_PRICE, dropout=0.0)
DATA = DataConfig(start="2008-01-01")
FAST = TrainConfig(max_steps=4, batch_size=16, warmup_steps=1, seed=3, precision="fp32")


@pytest.fixture(scope="module")
def price_run(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("progress") / "runs.db")
    return store, finished_price_run(store, ["goog"], model_cfg=TINY, data_cfg=DATA, train_cfg=FAST)


def strategy(store: RunStore, price: str, runs_dir, cancel: CancelToken | None = None):
    return train_strategy(price, [], model_cfg=StrategyModelConfig(state_dim=8), loss_cfg=StrategyLossConfig(),
                          data_cfg=DATA, train_cfg=FAST, store=store, runs_dir=runs_dir, cancel=cancel)


def encoding(events: list) -> list[Progress]:
    return [e for e in events if isinstance(e, Progress) and e.message.startswith("Encoding features")]


def test_a_strategy_run_is_recorded_and_announced_before_its_features_are_encoded(price_run, tmp_path):
    store, price = price_run
    events, seen_in_history = [], []

    def watch(event):
        events.append(event)
        if isinstance(event, Progress) and not seen_in_history:
            seen_in_history.append(store.get_run(events[0].run_id))

    done = run_to_end(strategy(store, price, tmp_path), watch)
    assert done.status == "finished", done.error
    assert isinstance(events[0], RunStarted) and events[0].kind == "strategy"
    assert seen_in_history[0]["status"] == "running"  # in the history while it encodes
    progress = encoding(events)
    assert len(progress) > 1  # one per batch of windows, not one for the whole phase
    done_counts = [p.done for p in progress]
    assert done_counts == sorted(done_counts) and len(set(done_counts)) == len(done_counts)
    assert progress[-1].done == progress[-1].total
    first_step = next(i for i, e in enumerate(events) if isinstance(e, StepEvent))
    assert events.index(progress[-1]) < first_step
    again = []
    assert run_to_end(strategy(store, price, tmp_path), again.append).status == "finished"
    assert not encoding(again)  # the second run reads the cache


def test_cancel_while_encoding_stops_within_a_batch_and_records_the_run_cancelled(price_run, tmp_path):
    store, price = price_run
    cancel, events = CancelToken(), []

    def cancel_at_second_batch(event):
        events.append(event)
        if len(encoding(events)) == 2:
            cancel.cancel()

    done = run_to_end(strategy(store, price, tmp_path, cancel), cancel_at_second_batch)
    assert isinstance(done, Finished) and done.status == "cancelled"
    assert len(encoding(events)) == 2 and done.step == 0
    assert not any(isinstance(e, StepEvent) for e in events)
    assert store.get_run(done.run_id)["status"] == "cancelled"
    assert done.last_checkpoint is None  # nothing was trained
    assert not list((tmp_path / price / "feature-cache").glob("*.npy"))  # a partial encoding is not cached


def test_a_backtest_reports_each_batch_it_forecasts_and_cancels_between_batches(price_run):
    store, price = price_run
    events = []
    record = run_to_end(backtest_job(price, "sse", cfg=BacktestConfig(start="1996-01-01"), store=store),
                        events.append)
    assert record.status == "finished"
    forecasting = [e for e in events if isinstance(e, Progress) and e.message.startswith("Forecasting")]
    assert len(forecasting) > 10 and forecasting[-1].done == forecasting[-1].total
    assert [p.done for p in forecasting] == sorted(p.done for p in forecasting)
    cancel, seen = CancelToken(), []

    def cancel_at_third(event):
        seen.append(event)
        if sum(isinstance(e, Progress) and e.message.startswith("Forecasting") for e in seen) == 3:
            cancel.cancel()

    stopped = run_to_end(backtest_job(price, "sse", cfg=BacktestConfig(start="1996-01-01"), store=store,
                                      cancel=cancel), cancel_at_third)
    assert stopped.status == "cancelled"
    assert sum(isinstance(e, Progress) and e.message.startswith("Forecasting") for e in seen) == 3
