"""A job returns its result; a run's recipe rebuilds it; resume is one engine call."""

from __future__ import annotations

import pytest

from engine.events import CancelToken, Finished, Progress, RunStarted, StepEvent, run_to_end
from engine.jobs.resume import resume_run
from engine.store import RunStore
from engine.training.price import run_price, train_price
from engine.training.recipe import RunRecipe, recorded_recipe
from tests.engine.training.test_price_training import DATA, TINY, TRAIN


def test_run_to_end_returns_what_the_job_returns_and_shows_every_event():
    def job():
        yield Progress(0, 2)
        yield Progress(1, 2)
        return "the result"

    seen = []
    assert run_to_end(job(), seen.append) == "the result"
    assert [e.done for e in seen] == [0, 1]


@pytest.fixture(scope="module")
def price_run(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("recipe") / "runs.db")
    done = run_to_end(train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN, store=store))
    assert done.status == "finished", done.error
    return store, done


def test_yield_from_a_training_job_gives_its_finished_record(price_run, tmp_path):
    store = RunStore(tmp_path / "runs.db")

    def two_stage_like():
        first = yield from train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN,
                                       store=store)
        return first, store.get_run(first.run_id)

    events = []
    done, record = run_to_end(two_stage_like(), events.append)
    assert isinstance(done, Finished) and done.status == "finished" and done.step == 8
    assert record["status"] == "finished" and done.metrics == price_run[1].metrics  # same seed
    assert isinstance(events[0], Progress) and events[0].message.startswith("Loading")  # news at once
    assert isinstance(events[2], RunStarted) and events[-1] == done


def test_recipe_round_trips_through_the_recorded_config_and_rebuilds_the_run(price_run):
    store, done = price_run
    record = store.get_run(done.run_id)
    recipe = RunRecipe.from_record(record)
    assert recipe.kind == "price" and recipe.datasets == ["spx"] and recipe.model == TINY
    assert recipe.to_dict().items() <= record["config"].items()  # and the split it resolved
    assert recipe.data.test_start == record["config"]["data"]["test_start"] is not None
    again = run_to_end(run_price(recipe, store=store))
    assert again.run_id != done.run_id and again.metrics == done.metrics
    assert store.get_run(again.run_id)["config"] == record["config"]


def test_recipe_of_a_missing_or_non_training_run_is_a_clear_error(price_run):
    store, done = price_run
    with pytest.raises(ValueError, match="no strategy run"):
        recorded_recipe(store, done.run_id, "strategy")
    with pytest.raises(ValueError, match="not a price or strategy run"):
        RunRecipe.from_record({"run_id": "b1", "kind": "backtest", "config": {}})


def test_resume_run_continues_an_interrupted_run_to_the_uninterrupted_result(price_run, tmp_path):
    _, full = price_run
    store, token = RunStore(tmp_path / "runs.db"), CancelToken()
    job = train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN, store=store, cancel=token)
    first = run_to_end(job, lambda e: isinstance(e, StepEvent) and e.step == 3 and token.cancel())
    assert first.status == "cancelled" and first.step == 3
    store.finish_run(first.run_id, "interrupted")  # as a crash leaves it
    events = []
    resumed = run_to_end(resume_run(store, first.run_id), events.append)
    assert next(e for e in events if isinstance(e, RunStarted)).resumed_from_step == 3
    assert resumed.run_id == first.run_id and resumed.status == "finished"
    assert resumed.metrics == full.metrics
    assert store.get_run(first.run_id)["status"] == "finished"


def test_resume_run_refuses_an_unknown_run_before_changing_anything(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    with pytest.raises(ValueError, match="no training run 'nope'"):
        run_to_end(resume_run(store, "nope"))



def test_a_run_recorded_before_calendar_cut_dates_is_not_resumed_on_another_split(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    legacy = RunRecipe("price", ["spx"], TINY, DATA, TRAIN)  # DATA holds fractions, no cut dates
    run_id = store.create_run("price", dataset="spx", fingerprint="", config=legacy.to_dict(), seed=0,
                              device="cpu", status="interrupted")
    with pytest.raises(ValueError, match=f"run {run_id} was recorded before calendar cut dates"):
        run_to_end(resume_run(store, run_id))
