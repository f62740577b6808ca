"""`--seeds N`: N seed runs and their ensemble, a run whose forecasts are the members' averaged
forecasts and whose positions are their averaged positions; its id works in forecast and backtest."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from engine.data import load_bars
from engine.forecast import forecast_quantiles, load_price_model, model_windows
from engine.policy import load_strategy_model, strategy_positions
from engine.store import RunStore
from engine.training.ensemble import metric_spread, record_ensemble
from tests.engine.helpers import TINY_PRICE_ARGS, cli_json

DATA = ["--data", "spx", "--start", "2011-01-01"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    db = tmp_path_factory.mktemp("seeds") / "runs.db"

    call = partial(cli_json, db)

    price = call("train-price", *DATA, "--preset", "tiny", *TINY_PRICE_ARGS, "--max-steps", "6",
                 "--batch-size", "16", "--seed", "5", "--seeds", "2")
    strategy = call("train-strategy", "--price-run", price["run_id"], "--max-steps", "4", "--batch-size", "16",
                    "--set", "state_dim=16", "--seeds", "2")
    return {"db": db, "call": call, "price": price, "strategy": strategy}


def test_cli_json_has_members_and_spread(seeded):
    price = seeded["price"]
    assert [m["seed"] for m in price["seeds"]] == [5, 6]
    assert len({m["run_id"] for m in price["seeds"]} | {price["run_id"]}) == 3
    assert price["status"] == "finished" and price["split"]
    for name, spread in price["spread"].items():
        values = [m["metrics"][name] for m in price["seeds"]]
        assert spread["mean"] == pytest.approx(np.mean(values))
        assert spread["std"] == pytest.approx(np.std(values, ddof=1))
    store = RunStore(seeded["db"])
    record = store.get_run(price["run_id"])
    assert record["kind"] == "price" and record["config"]["ensemble"] == [m["run_id"] for m in price["seeds"]]


def test_price_ensemble_forecasts_the_mean_of_its_members(seeded):
    store = RunStore(seeded["db"])
    ensemble = load_price_model(seeded["price"]["run_id"], store)
    members = [load_price_model(m["run_id"], store) for m in seeded["price"]["seeds"]]
    ws = model_windows(ensemble, load_bars("spx"))
    ends = ws.ends[-40:]
    got = forecast_quantiles(ensemble, ws, ends)
    parts = [forecast_quantiles(m, ws, ends) for m in members]
    assert not np.allclose(parts[0].returns, parts[1].returns)  # the seeds made different networks
    np.testing.assert_allclose(got.returns, np.mean([p.returns for p in parts], axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.quantile_returns, np.mean([p.quantile_returns for p in parts], axis=0),
                               rtol=1e-5, atol=1e-7)
    if np.isfinite(got.quantile_returns).all():
        assert (np.diff(got.quantile_returns, axis=-1) >= 0).all()  # averaged quantiles do not cross


def test_strategy_ensemble_averages_positions(seeded):
    store = RunStore(seeded["db"])
    ensemble = load_strategy_model(seeded["strategy"]["run_id"], store)
    members = [load_strategy_model(m["run_id"], store) for m in seeded["strategy"]["seeds"]]
    ws = model_windows(ensemble.price, load_bars("spx"))
    days = np.arange(len(ws.dates) - 60, len(ws.dates))
    got = strategy_positions(ensemble, ws, days)
    each = np.stack([strategy_positions(m, ws, days) for m in members])
    np.testing.assert_array_equal(got, np.rint(each.mean(axis=0)))
    assert got.min() >= 0 and got.max() <= 10


def test_ensemble_runs_forecast_and_backtest(seeded):
    call = seeded["call"]
    fc = call("forecast", "--run", seeded["price"]["run_id"], "--data", "spx")
    assert len(fc["prices"]) == 7
    for run in (seeded["price"], seeded["strategy"]):
        bt = call("backtest", "--run", run["run_id"], "--data", "spx")
        assert bt["in_sample"] is False and np.isfinite(bt["metrics"]["sharpe"])


def test_members_of_different_price_runs_do_not_form_an_ensemble(seeded):
    store = RunStore(seeded["db"])
    price_members = [m["run_id"] for m in seeded["price"]["seeds"]]
    with pytest.raises(ValueError, match="share one kind"):
        record_ensemble(store, [price_members[0], seeded["strategy"]["seeds"][0]["run_id"]])
    assert metric_spread([{"a": 1.0, "b": "x"}, {"a": 3.0}]) == {"a": {"mean": 2.0, "std": pytest.approx(2 ** 0.5)}}
