"""Rolling retraining: retrain a run on an expanding window every N days over a forward period,
trade each block with the model retrained just before it, and compare with the run trained once.

Block k covers forward days [s_k, s_k + N); its model is the source's recipe cut at the day before
s_k (walkforward.cut_at: cut dates resolved afresh inside that span), so no retrain ever trains,
validates or selects on a day it later scores. Each retrain is a run in the history with its lineage:
a price retrain's parent_run is the "rolling" run (whose parent is the source), a strategy retrain's
is its price retrain, as for any strategy run (source -> rolling -> price retrain -> strategy retrain).
The rolling run records the schedule, the retrains' ids and both backtests: rolling (stitched blocks)
and train-once (the source on the same days).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from engine.backtest.run import run_backtest, stitch_blocks
from engine.config import BacktestConfig, to_dict
from engine.data import load_bars
from engine.events import CancelToken, Event, Progress
from engine.forecast import load_price_model, model_windows
from engine.jobs.backtest import load_source, positions_for
from engine.jobs.walkforward import cut_at
from engine.policy import load_strategy_model
from engine.store import RunStore
from engine.training.price import run_price
from engine.training.recipe import RunRecipe
from engine.training.strategy import run_strategy

COMPARED = ("total_return", "sharpe", "max_drawdown", "turnover")


@dataclass
class RollingReport:
    status: str
    run_id: str | None  # the rolling run recording the schedule and lineage
    blocks: list[dict]  # {"train_end", "start", "end", "runs"}
    rolling: dict  # metrics of the stitched rolling backtest
    train_once: dict  # metrics of the source run on the same days

    def to_json(self) -> dict:
        return {"status": self.status, "run_id": self.run_id, "blocks": self.blocks,
                "rolling": self.rolling, "train_once": self.train_once}


def rolling_blocks(dates: pd.DatetimeIndex, start: str, end: str | None, every: int) -> list[np.ndarray]:
    """Day indices of the forward period cut into blocks of `every` days; each block's model is
    trained on days before its first."""
    days = np.flatnonzero((dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end or dates[-1])))
    if every < 1 or len(days) < 2:
        raise ValueError("rolling retraining needs every >= 1 and at least two forward days")
    if days[0] == 0:
        raise ValueError("the forward period must start after the first bar: the first retrain needs history")
    return [days[i:i + every] for i in range(0, len(days), every)]


def rolling_job(model_ref: str, data: str, *, every: int, start: str, end: str | None = None,
                cfg: BacktestConfig | None = None, store: RunStore,
                cancel: CancelToken | None = None) -> Generator[Event, None, RollingReport]:
    """Retrain `model_ref` (a run id) every `every` days from `start`, backtest the stitched blocks
    and the source over the same days, and record the comparison as a "rolling" run."""
    cfg = cfg or BacktestConfig()
    src = load_source(model_ref, store)
    if src.run_id is None:
        raise ValueError("rolling retraining retrains a run: give a run id, not a checkpoint file")
    recipe = RunRecipe.from_record(store.get_run(src.run_id))
    price_recipe = RunRecipe.from_record(store.get_run(recipe.price_run)) if recipe.price_run else recipe
    bars = load_bars(data, adjust=price_recipe.data.adjust)
    ws = model_windows(src.price, bars)
    blocks = rolling_blocks(ws.dates, start, end, every)
    rolling_id = store.create_run("rolling", dataset=data, fingerprint=bars.fingerprint,
                                  config={"source": src.run_id, "every": every, "start": start, "end": end,
                                          "backtest": to_dict(cfg)}, seed=recipe.train.seed, device="cpu",
                                  parent_run=src.run_id)
    pieces, done = [], []
    for k, block in enumerate(blocks):
        yield Progress(k, len(blocks), f"retrain {k + 1}/{len(blocks)}")
        cut = f"{ws.dates[block[0] - 1]:%Y-%m-%d}"
        price = yield from run_price(cut_at(price_recipe, cut), store=store, cancel=cancel, parent=rolling_id)
        fold = price
        if price.status == "finished" and recipe.kind == "strategy":
            fold = yield from run_strategy(replace(cut_at(recipe, cut), price_run=price.run_id),
                                           store=store, cancel=cancel)
        if fold.status != "finished":  # the retrains made so far stay listed under the rolling run
            runs = [price.run_id] + ([fold.run_id] if fold is not price else [])
            stopped = {"train_end": cut, "start": f"{ws.dates[block[0]]:%Y-%m-%d}", "end": None,
                       "runs": [r for r in runs if r]}
            store.finish_run(rolling_id, fold.status, error=fold.error, metrics={"blocks": [*done, stopped]})
            return RollingReport(fold.status, rolling_id, done, {}, {})
        if recipe.kind == "strategy":
            loaded = load_strategy_model(fold.run_id, store)
            block_src = replace(src, run_id=fold.run_id, price=loaded.price, strategy=loaded)
        else:
            block_src = replace(src, run_id=price.run_id, price=load_price_model(price.run_id, store))
        positions, _ = yield from positions_for(block_src, ws, block, cancel)
        first, last = f"{ws.dates[block[0]]:%Y-%m-%d}", f"{ws.dates[block[-1]]:%Y-%m-%d}"
        pieces.append((first, last, positions))
        done.append({"train_end": cut, "start": first, "end": last,
                     "runs": [price.run_id] + ([fold.run_id] if fold is not price else [])})
    close, opens = pd.Series(ws.close, index=ws.dates), bars.frame["open"]
    rolled = stitch_blocks(close, pieces, cfg, opens=opens, instrument=bars.instrument)
    once_days = np.concatenate(blocks)
    once, _ = yield from positions_for(src, ws, once_days, cancel)
    window = replace(cfg, start=done[0]["start"], end=done[-1]["end"])
    trained_once = run_backtest(close, once, window, opens=opens, instrument=bars.instrument)
    report = RollingReport("finished", rolling_id, done,
                           {k: rolled.metrics.get(k) for k in COMPARED},
                           {k: trained_once.metrics.get(k) for k in COMPARED})
    store.finish_run(rolling_id, "finished", metrics={"blocks": done, "rolling": report.rolling,
                                                      "train_once": report.train_once})
    yield Progress(len(blocks), len(blocks), "done")
    return report


__all__ = ["RollingReport", "rolling_blocks", "rolling_job"]
