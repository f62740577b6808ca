"""Stage 2 as a user runs it: frozen price features computed once and cached, a deterministic policy,
and a backtest that trades what the network decides."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import engine.forecast as forecast
import engine.policy as policy
from engine.checkpoint import load_checkpoint
from engine.config import BacktestConfig, DataConfig, StrategyLossConfig, StrategyModelConfig, TrainConfig, override
from engine.data import build_windows, calendar_split, load_bars, recorded_cut_dates
from engine.events import Finished, run_to_end
from engine.jobs.backtest import backtest_job, load_backtest_frame, load_source, overlaps_training
from engine.store import RunStore
from engine.training.recipe import RunRecipe
from engine.training.strategy import train_strategy
from engine.training.trainer import last_checkpoint
from tests.engine.helpers import TINY_PRICE, finished_price_run

STRATEGY = StrategyModelConfig(state_dim=16)

TINY = override(TINY_PRICE, dropout=0.0)
DATA = DataConfig(start="2008-01-01")
FAST = TrainConfig(max_steps=10, batch_size=16, warmup_steps=2, seed=1, precision="fp32")


def finished(job) -> Finished:
    done = run_to_end(job)
    assert isinstance(done, Finished)
    return done


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("strategy") / "runs.db")
    return store, finished_price_run(store, ["goog"], model_cfg=TINY, data_cfg=DATA, train_cfg=FAST)


def test_transformer_runs_once_per_instrument_then_features_come_from_the_cache(runs, monkeypatch):
    store, price_run = runs
    calls = []
    real = forecast.outputs_progress
    monkeypatch.setattr(policy, "outputs_progress", lambda *a: calls.append(1) or real(*a))  # the stage's encoder
    cfg = STRATEGY
    for _ in range(2):
        done = finished(train_strategy(price_run, ["goog"], model_cfg=cfg,
                                       loss_cfg=StrategyLossConfig(), data_cfg=DATA,
                                       train_cfg=FAST, store=store))
        assert done.status == "finished", done.error
    assert len(calls) == 1  # the second run (and every epoch of both) read the cache
    run = store.get_run(done.run_id)
    assert run["parent_run"] == price_run and run["kind"] == "strategy"
    assert {"val_total_return", "val_buy_and_hold"} <= set(done.metrics)


@pytest.fixture(scope="module")
def strategy_run(runs):
    store, price_run = runs
    done = finished(train_strategy(price_run, ["goog"], model_cfg=STRATEGY,
                                   loss_cfg=StrategyLossConfig(), data_cfg=DATA, train_cfg=FAST,
                                   store=store))
    return store, done.run_id


def test_inference_positions_are_integers_and_identical_across_calls(strategy_run):
    store, run_id = strategy_run
    loaded = policy.load_strategy_model(run_id, store)
    ws = build_windows(load_bars("goog"), 180, 7)
    days = np.arange(len(ws.dates) - 300, len(ws.dates))
    first = policy.strategy_positions(loaded, ws, days)
    second = policy.strategy_positions(loaded, ws, days)
    assert first.dtype.kind == "i" and first.min() >= 0 and first.max() <= 10
    np.testing.assert_array_equal(first, second)


def test_a_day_needs_a_full_window_and_sequence_of_history(strategy_run):
    store, run_id = strategy_run
    loaded = policy.load_strategy_model(run_id, store)
    ws = build_windows(load_bars("goog"), 180, 7)
    with pytest.raises(ValueError, match="history"):
        policy.strategy_positions(loaded, ws, np.array([10]))


def test_backtest_job_trades_the_policy_from_the_models_test_start(strategy_run):
    store, run_id = strategy_run
    done = run_to_end(backtest_job(run_id, "goog", cfg=BacktestConfig(cost_bps=5), store=store))
    assert done.status == "finished" and done.run_id == run_id
    record = store.get_backtest(done.backtest_id)
    assert record["metrics"]["sharpe"] == pytest.approx(done.result.metrics["sharpe"], nan_ok=True)
    frame = load_backtest_frame(record)
    src = load_source(run_id, store)
    ws = build_windows(load_bars("goog"), 180, 7)
    days = ws.dates.get_indexer(frame.index)
    expected = policy.strategy_positions(src.strategy, ws, days)
    np.testing.assert_array_equal(frame["position"].to_numpy(), expected)
    # the default period starts at the first test day of the run's calendar cut dates
    bars = load_bars("goog")
    cuts = src.cuts
    assert cuts == recorded_cut_dates(src.strategy.data_cfg)  # stage 2 inherits stage 1's cuts
    trained = build_windows(replace(bars, frame=bars.frame.loc["2008-01-01":]), 180, 7)
    test_start = trained.dates[calendar_split(trained, cuts, 7).test[0]]
    assert frame.index[0] == test_start >= pd.Timestamp(cuts.test_start)
    assert record["config"]["in_sample"] is False
    assert overlaps_training(src, bars, "2010-01-04")
    assert not overlaps_training(src, bars, f"{test_start:%Y-%m-%d}")
    assert overlaps_training(src, load_bars("aapl"), "2005-01-03")  # before test_start, any instrument
    assert record["run_id"] == run_id and record["config"]["cost_bps"] == 5


def test_an_explicit_start_before_the_test_start_is_allowed_and_marked_in_sample(strategy_run):
    store, run_id = strategy_run
    done = run_to_end(backtest_job(run_id, "goog", cfg=BacktestConfig(start="2011-06-01"), store=store))
    assert done.status == "finished" and done.config["in_sample"] is True
    assert store.get_backtest(done.backtest_id)["config"]["in_sample"] is True


def test_an_instrument_with_no_days_after_the_test_start_is_refused_not_backtested_in_sample(
        strategy_run, tmp_path):
    store, run_id = strategy_run
    early = tmp_path / "aapl_to_2011.csv"
    load_bars("aapl").frame.loc[:"2011-12-31"].rename_axis("date").to_csv(early)
    with pytest.raises(ValueError, match="no days on or after the model's test start"):
        run_to_end(backtest_job(run_id, str(early), cfg=BacktestConfig(), store=store))


def test_stage2_inherits_the_price_runs_data_and_cut_dates_and_records_where_features_came_from(
        strategy_run):
    store, run_id = strategy_run
    price_run = store.get_run(run_id)["parent_run"]
    price_cfg = store.get_run(price_run)["config"]
    inherited = finished(train_strategy(price_run, [], model_cfg=STRATEGY, loss_cfg=StrategyLossConfig(),
                                        data_cfg=DATA, train_cfg=FAST, store=store))
    config = store.get_run(inherited.run_id)["config"]
    assert config["sources"] == ["goog"]
    cuts = {k: price_cfg["data"][k] for k in ("train_end", "val_end", "test_start")}
    assert {k: config["data"][k] for k in cuts} == cuts
    (block,) = config["features_from"]
    assert block["price_train_end"] == cuts["train_end"] < block["encoded"][0]
    assert block["encoded"][1] <= cuts["val_end"]
    assert config["split"]["train"][0] > cuts["train_end"] and config["split"]["val"][1] <= cuts["val_end"]
    assert config["split"]["test"][0] >= cuts["test_start"]


@pytest.mark.parametrize("data, data_cfg, needle", [
    (["spx"], DATA, "differ from the price run"),
    (["goog"], replace(DATA, train_end="2010-01-04"), "train_end 2010-01-04 differs"),
])
def test_stage2_refuses_other_data_or_cut_dates_than_stage_1s(strategy_run, data, data_cfg, needle):
    store, run_id = strategy_run
    price_run = store.get_run(run_id)["parent_run"]
    with pytest.raises(ValueError, match=needle):
        run_to_end(train_strategy(price_run, data, model_cfg=STRATEGY, loss_cfg=StrategyLossConfig(),
                                  data_cfg=data_cfg, train_cfg=FAST, store=store))


def test_strategy_recipe_round_trips_through_its_record(strategy_run):
    store, run_id = strategy_run
    record = store.get_run(run_id)
    recipe = RunRecipe.from_record(record)
    assert recipe.kind == "strategy" and recipe.price_run == record["parent_run"]
    assert recipe.to_dict().items() <= record["config"].items() and recipe.loss == StrategyLossConfig()
    assert set(record["config"]) - set(recipe.to_dict()) == {"split", "features_from"}


def test_walk_forward_retrains_per_fold_and_never_trains_on_a_traded_day(strategy_run):
    from engine.jobs.walkforward import walk_forward_job

    store, run_id = strategy_run
    done = run_to_end(walk_forward_job(run_id, "goog", folds=2, cfg=BacktestConfig(), store=store,
                                       fraction=0.2))
    assert done.status == "finished", done.error
    record = store.get_backtest(done.backtest_id)
    folds = record["config"]["walk_forward"]
    frame = load_backtest_frame(record)
    assert len(folds) == 2 and frame.index[0] == pd.Timestamp(folds[0]["start"])
    assert frame.index[-1] == pd.Timestamp(folds[1]["end"])
    for fold in folds:
        price_run, strat_run = fold["runs"]
        for run in (price_run, strat_run):
            data = store.get_run(run)["config"]["data"]
            assert pd.Timestamp(data["end"]) < pd.Timestamp(fold["start"])  # retrained on the past only
            assert pd.Timestamp(data["val_end"]) < pd.Timestamp(fold["start"])  # its own cut dates
        assert store.get_run(strat_run)["parent_run"] == price_run
    assert folds[0]["end"] < folds[1]["start"]


def test_the_risk_managing_run_reads_the_distribution_and_anneals_to_the_floor(strategy_run):
    store, run_id = strategy_run
    loaded = policy.load_strategy_model(run_id, store)
    cfg = loaded.model_cfg
    assert (cfg.inputs, cfg.regime_input, cfg.warm_start, cfg.hard) == ("distribution", True, True, True)
    horizon = loaded.price.model_cfg.horizon
    names = policy.strategy_input_names(cfg, horizon)
    assert cfg.feature_dim == len(names) == 5 * horizon + 1 + 3 and names[-3:] == [
        "regime bear", "regime sideways", "regime bull"]
    assert store.get_run(run_id)["config"]["loss"]["kind"] == "utility"
    extra = load_checkpoint(last_checkpoint(store, run_id))["extra"]
    assert extra["tau"] == pytest.approx(cfg.tau_floor)  # 10 steps: the floor from step 7 on


def test_the_old_feature_path_and_excess_loss_still_train(runs):
    store, price_run = runs
    old = StrategyModelConfig(state_dim=16, inputs="features", regime_input=False, warm_start=False, hard=False)
    done = finished(train_strategy(price_run, ["goog"], model_cfg=old, loss_cfg=StrategyLossConfig(kind="excess"),
                                   data_cfg=DATA, train_cfg=FAST, store=store))
    assert done.status == "finished", done.error
    loaded = policy.load_strategy_model(done.run_id, store)
    assert loaded.model_cfg.feature_dim == loaded.price.feature_dim
    ws = build_windows(load_bars("goog"), 180, 7)
    days = np.arange(len(ws.dates) - 5, len(ws.dates))
    assert set(policy.strategy_positions(loaded, ws, days).tolist()) <= set(range(11))
