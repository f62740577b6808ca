"""Stage 1 end to end on bundled data with a tiny model: run history, determinism, cancel,
failure, resume (also after kill -9), and the forecast API on the trained checkpoint."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from engine.config import DataConfig, PriceModelConfig, TrainConfig, from_dict, override
from engine.data import build_windows, load_bars, split_json
from engine.events import CancelToken, Finished, RunStarted, StepEvent
from engine.forecast import forecast, forecast_many, load_price_model
from engine.store import RunStore
from engine.training.price import prepare_price_data, price_metrics, train_price

TINY = override(PriceModelConfig(), d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16,
                qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64)
DATA = DataConfig(start="2014-06-01")
TRAIN = TrainConfig(epochs=2, max_steps=8, batch_size=16, eval_every=4, lr=1e-3, warmup_steps=2,
                    precision="fp32", device="cpu")
HORIZONS = [f"skill_h{h}" for h in range(1, 8)]


def run(store: RunStore, train: TrainConfig = TRAIN, **kw) -> list:
    return list(train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=train, store=store, **kw))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("runs") / "runs.db")
    events = run(store)
    return store, events


def test_run_appears_with_series_checkpoint_and_eval_metrics(trained):
    store, events = trained
    done = events[-1]
    assert isinstance(done, Finished) and done.status == "finished"
    record = store.get_run(done.run_id)
    assert record["status"] == "finished" and record["kind"] == "price"
    assert record["dataset"] == "spx" and record["fingerprint"] == load_bars("spx").fingerprint
    assert record["config"]["model"]["d_model"] == 32 and record["config"]["sources"] == ["spx"]
    assert [s for s, _ in store.metric_series(done.run_id, "train/loss")] == list(range(1, 9))
    assert [s for s, _ in store.metric_series(done.run_id, "val/loss")] == [4, 8]
    for name in ["val/mae", "val/direction_accuracy", *(f"val/{h}" for h in HORIZONS)]:
        assert len(store.metric_series(done.run_id, name)) == 2, name
    metrics = record["metrics"]
    assert metrics["mae"] > 0 and 0 <= metrics["direction_accuracy"] <= 1
    assert all(-1 < metrics[h] < 1 for h in HORIZONS)
    best = store.checkpoint(done.run_id, best=True)
    assert best["path"] == done.best_checkpoint and Path(best["path"]).is_file()
    assert {"price_loss", "aux_loss"} <= set(next(e for e in events if isinstance(e, StepEvent)).extras)


def test_targets_are_vol_scaled_and_a_classic_run_scales_by_its_train_split_only(trained):
    _store, events = trained
    prepared = prepare_price_data(["spx"], DATA)
    assert prepared.target_scale is None
    assert "target_scale" not in load_checkpoint(events[-1].best_checkpoint)["extra"]
    items = prepared.split.train[:50]
    np.testing.assert_allclose(prepared.pooled.targets(items) / prepared.units(items),
                               prepared.pooled.scaled_targets(items), rtol=1e-12)
    assert prepared.split.val[:, 1].min() - prepared.split.train[:, 1].max() > DATA.horizon
    classic = prepare_price_data(["spx"], replace(DATA, feature_set="classic"))
    train_targets = classic.pooled.targets(classic.split.train)
    np.testing.assert_allclose(classic.target_scale, train_targets.std(axis=0), rtol=1e-9)


def test_a_checkpoint_recorded_before_heads_and_feature_sets_loads_as_classic_point(tmp_path):
    """Old runs recorded neither `head` nor `feature_set`: they load as what they were trained as."""
    store = RunStore(tmp_path / "runs.db")
    old = override(TINY, head="point", n_features=11)
    done = list(train_price(["spx"], model_cfg=old, data_cfg=replace(DATA, feature_set="classic"),
                            train_cfg=replace(TRAIN, max_steps=2), store=store, runs_dir=tmp_path))[-1]
    ckpt = load_checkpoint(done.best_checkpoint)
    del ckpt["configs"]["model"]["head"], ckpt["configs"]["data"]["feature_set"]
    path = tmp_path / "old.pt"
    save_checkpoint(path, model_state=ckpt["model"], configs=ckpt["configs"], extra=ckpt["extra"])
    loaded, fresh = load_price_model(path), load_price_model(done.best_checkpoint)
    assert (loaded.model_cfg.head, loaded.data_cfg.feature_set) == ("point", "classic")
    assert loaded.target_scale.shape == (7,)
    result = forecast(loaded, load_bars("spx"))
    assert result.prices == forecast(fresh, load_bars("spx")).prices and result.quantiles == {}


def test_the_run_records_one_set_of_cut_dates_and_its_split(trained):
    store, events = trained
    config = store.get_run(events[-1].run_id)["config"]
    prepared = prepare_price_data(["spx"], DATA)
    assert {k: config["data"][k] for k in ("train_end", "val_end", "test_start")} == prepared.cuts.to_dict()
    assert config["split"] == split_json(prepared.cuts, prepared.pooled.sets, DATA.horizon)
    assert load_price_model(events[-1].best_checkpoint).data_cfg.test_start == prepared.cuts.test_start
    # a resume reads the recorded cut dates back and never recomputes them from the fractions
    recorded = from_dict(DataConfig, config["data"])
    again = prepare_price_data(["spx"], replace(recorded, val_fraction=0.4, test_fraction=0.3))
    assert again.cuts == prepared.cuts


def test_explicit_cut_dates_are_honoured_and_bad_ones_refused():
    prepared = prepare_price_data(["spx"], replace(DATA, train_end="2016-12-30", val_end="2017-12-29"))
    assert (prepared.cuts.train_end, prepared.cuts.val_end) == ("2016-12-30", "2017-12-29")
    train_days = prepared.pooled.sets[0].dates[prepared.split.train[:, 1] + DATA.horizon]
    assert train_days.max() <= pd.Timestamp("2016-12-30")
    with pytest.raises(ValueError, match="train_end 2030-01-01 lies outside the data"):
        prepare_price_data(["spx"], replace(DATA, train_end="2030-01-01"))


def test_price_metrics_against_hand_computed_values():
    close = np.array([100.0, 200.0])
    true = np.log(np.array([[110.0, 90.0], [190.0, 220.0]]) / close[:, None])
    pred = np.log(np.array([[105.0, 95.0], [205.0, 210.0]]) / close[:, None])
    m = price_metrics(pred, true, close)
    assert m["mae"] == pytest.approx((5 + 5 + 15 + 10) / 4)
    assert m["direction_accuracy"] == 0.5  # up/up right, down/up wrong
    assert m["skill_h1"] == pytest.approx(1 - 10 / 10)
    assert m["skill_h2"] == pytest.approx(1 - 7.5 / 15)


def test_same_seed_gives_the_same_numbers(trained, tmp_path):
    _store, events = trained
    again = run(RunStore(tmp_path / "r.db"))
    assert again[-1].metrics == events[-1].metrics
    assert [e.loss for e in again if isinstance(e, StepEvent)] == \
        [e.loss for e in events if isinstance(e, StepEvent)]


def _run_calling_at_step(store: RunStore, token: CancelToken, step: int, action: Callable[[], None]) -> list:
    """Train with a cancel token, calling action (which cancels) when the given step is logged."""
    events = []
    for event in train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN, store=store,
                             cancel=token):
        events.append(event)
        if isinstance(event, StepEvent) and event.step == step:
            action()
    return events


def test_cancel_from_another_thread(tmp_path):
    store, token = RunStore(tmp_path / "r.db"), CancelToken()

    def cancel_from_a_thread() -> None:
        worker = threading.Thread(target=token.cancel)
        worker.start()
        worker.join()

    events = _run_calling_at_step(store, token, 2, cancel_from_a_thread)
    assert events[-1].status == "cancelled" and events[-1].step == 2
    assert store.get_run(events[-1].run_id)["status"] == "cancelled"
    assert load_checkpoint(events[-1].last_checkpoint)["step"] == 2


def test_non_finite_loss_marks_the_run_failed_with_its_step(tmp_path):
    store = RunStore(tmp_path / "r.db")
    events = run(store, override(TRAIN, lr=1e30, warmup_steps=0, grad_clip=0.0))
    done = events[-1]
    assert done.status == "failed" and "non-finite" in done.error and "at step " in done.error
    assert store.get_run(done.run_id)["error"] == done.error


def started(events: list) -> RunStarted:
    """The run's RunStarted (a price job says it is loading the data first)."""
    return next(e for e in events if isinstance(e, RunStarted))


def _model_state(path: str) -> dict:
    return load_checkpoint(path)["model"]


def test_resume_continues_to_the_uninterrupted_result(trained, tmp_path):
    _, full = trained
    store, token = RunStore(tmp_path / "r.db"), CancelToken()
    first = _run_calling_at_step(store, token, 5, token.cancel)
    run_id = first[-1].run_id
    assert first[-1].status == "cancelled"
    resumed = list(train_price([], model_cfg=PriceModelConfig(), data_cfg=DataConfig(),
                               train_cfg=TrainConfig(device="cpu"), store=store, resume=run_id))
    assert started(resumed).resumed_from_step == 5 and resumed[-1].status == "finished"
    assert resumed[-1].run_id == run_id and resumed[-1].metrics == full[-1].metrics
    a, b = _model_state(full[-1].last_checkpoint), _model_state(resumed[-1].last_checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [s for s, _ in store.metric_series(run_id, "train/loss")] == list(range(1, 9))


CHILD = textwrap.dedent("""
    import sys, time
    from engine.config import TrainConfig
    from engine.store import RunStore
    from engine.events import StepEvent
    from engine.training.price import train_price
    from tests.engine.training.test_price_training import TINY, DATA
    cfg = TrainConfig(epochs=1, max_steps=30, batch_size=16, eval_every=4, precision="fp32",
                      device="cpu", num_threads=1)
    for event in train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=cfg,
                             store=RunStore(sys.argv[1])):
        if isinstance(event, StepEvent):
            print(event.step, flush=True)
            time.sleep(0.2)
""")


def test_kill_9_then_reopen_marks_interrupted_and_resume_works(tmp_path):
    db = tmp_path / "r.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE,
                             text=True, cwd=Path(__file__).resolve().parents[3])
    for line in child.stdout:
        if int(line) >= 6:  # past the first checkpoint (step 4), mid-way to the next
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    store = RunStore(db)
    [record] = store.list_runs()
    assert record["status"] == "interrupted"
    events = list(train_price([], model_cfg=TINY, data_cfg=DATA, train_cfg=TrainConfig(device="cpu"),
                              store=store, resume=record["run_id"]))
    assert started(events).resumed_from_step == 4
    assert events[-1].status == "finished" and events[-1].step == 30
    assert store.get_run(record["run_id"])["status"] == "finished"
    assert [s for s, _ in store.metric_series(record["run_id"], "train/loss")] == list(range(1, 31))


def test_resume_of_unknown_run_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no price run"):
        run(RunStore(tmp_path / "r.db"), resume="price-nope")


# forecast API ----------------------------------------------------------------------------------
def test_forecast_latest_bar_and_a_past_date(trained):
    store, events = trained
    model = load_price_model(events[-1].run_id, store=store)
    assert not model.model.training and model.sha256 == store.checkpoint(events[-1].run_id, True)["sha256"]
    bars = load_bars("spx")
    latest = forecast(model, bars)
    assert latest.asof == "2018-12-31" and len(latest.dates) == len(latest.prices) == 7
    assert latest.dates[0] == "2019-01-01" and latest.dates[-1] == "2019-01-09"  # business days
    last_close = bars.frame["close"].iloc[-1]
    assert all(0.7 * last_close < p < 1.3 * last_close for p in latest.prices)
    past = forecast(model, bars, asof="2015-07-04")  # a Saturday: the Friday before is used
    assert past.asof == "2015-07-02" and past.dates[0] == "2015-07-03"
    ws = build_windows(bars)
    day = int(ws.dates.get_loc(pd.Timestamp("2015-07-02")))
    batch = forecast_many(model, bars, np.array([day, len(ws.dates) - 1]))
    np.testing.assert_allclose(batch[0], past.prices, rtol=1e-6)
    np.testing.assert_allclose(batch[1], latest.prices, rtol=1e-6)
    with pytest.raises(ValueError, match="first date"):
        forecast(model, bars, asof="1999-02-01")


def test_forecast_by_checkpoint_path_and_wrong_shape(trained, tmp_path):
    _, events = trained
    loaded = load_price_model(events[-1].best_checkpoint)
    assert loaded.model_cfg.d_model == 32 and loaded.target_scale is None  # vol-scaled: no train scale
    assert (loaded.model_cfg.head, loaded.data_cfg.feature_set) == ("quantile", "vol_scaled")
    ckpt = load_checkpoint(events[-1].best_checkpoint)
    ckpt["configs"]["model"]["d_model"] = 64
    other = tmp_path / "other.pt"
    save_checkpoint(other, model_state=ckpt["model"], configs=ckpt["configs"], extra=ckpt["extra"])
    with pytest.raises(CheckpointError, match=r"other\.pt.*shape"):
        load_price_model(other)
    with pytest.raises(CheckpointError, match="no best checkpoint"):
        load_price_model("price-missing", store=RunStore(tmp_path / "r.db"))
