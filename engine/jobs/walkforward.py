"""Walk-forward backtest: retrain on expanding windows, trade each following block out of sample,
stitch the blocks into one backtest.

Each fold retrains the source run's stages with the same configs on the source's data cut at the
day before the fold's block, with calendar cut dates resolved afresh inside that span (val_end its
last day, train_end from the fractions; targets of the last validation window end there), so no
fold ever trains, validates or selects on a close it trades on. Fold runs are ordinary runs in
the history; the stitched backtest records their ids.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace

import numpy as np
import pandas as pd

from engine.backtest.run import stitch_blocks
from engine.config import BacktestConfig
from engine.data import WindowSet, load_bars, walk_forward_folds
from engine.events import CancelToken, Event, Progress
from engine.forecast import load_price_model, model_windows
from engine.jobs.backtest import (
    BacktestRecord,
    distribution_of,
    load_source,
    positions_for,
    record_backtest,
    with_bands,
)
from engine.policy import load_strategy_model
from engine.store import RunStore
from engine.training.price import run_price
from engine.training.recipe import RunRecipe
from engine.training.strategy import run_strategy


def fold_blocks(ws: WindowSet, folds: int, fraction: float) -> list[np.ndarray]:
    """Day indices of each fold's out-of-sample block: the last `fraction` of the usable
    history cut into `folds` equal blocks, in time order."""
    usable = int(ws.has_targets(ws.ends).sum())
    size = max(2, int(usable * fraction) // folds)
    splits = walk_forward_folds(ws, folds, size, embargo=ws.horizon, min_train=ws.window)
    return [s.test for s in splits]


def cut_at(recipe: RunRecipe, day: str) -> RunRecipe:
    """The recipe trained on data up to `day` only, all of it for training and validation: the
    source's recorded cut dates (which may lie after `day`) are dropped and resolved again."""
    data = replace(recipe.data, end=day, test_fraction=0.0, train_end=None, val_end=None,
                   test_start=None)
    return replace(recipe, data=data)


def walk_forward_job(model_ref: str, data: str, *, folds: int, cfg: BacktestConfig, store: RunStore,
                     fraction: float = 0.5, cancel: CancelToken | None = None,
                     ) -> Generator[Event, None, BacktestRecord]:
    """Retrain the run `model_ref` `folds` times and backtest the stitched blocks; returns the
    record (status of the first fold that did not finish, if one did not)."""
    if folds < 1:
        raise ValueError("walk-forward needs at least one fold")
    src = load_source(model_ref, store)
    if src.run_id is None:
        raise ValueError("walk-forward retrains a run: give a run id, not a checkpoint file")
    record = store.get_run(src.run_id)
    recipe = RunRecipe.from_record(record)
    price_recipe = RunRecipe.from_record(store.get_run(recipe.price_run)) if recipe.price_run else recipe
    bars = load_bars(data, adjust=price_recipe.data.adjust)
    ws = model_windows(src.price, bars)
    dates, blocks = ws.dates, fold_blocks(ws, folds, fraction)
    pieces, predicted, fold_runs = [], [], []
    for k, block in enumerate(blocks):
        yield Progress(k, len(blocks), f"fold {k + 1}/{len(blocks)}: retraining")
        cut = f"{dates[block[0] - 1]:%Y-%m-%d}"
        price = yield from run_price(cut_at(price_recipe, cut), store=store, cancel=cancel)
        fold = price
        if price.status == "finished" and recipe.kind == "strategy":
            fold = yield from run_strategy(replace(cut_at(recipe, cut), price_run=price.run_id),
                                           store=store, cancel=cancel)
        if fold.status != "finished":
            return BacktestRecord(fold.status, run_id=src.run_id, dataset=data, error=fold.error)
        if recipe.kind == "strategy":
            loaded = load_strategy_model(fold.run_id, store)
            fold_src = replace(src, run_id=fold.run_id, price=loaded.price, strategy=loaded)
        else:
            fold_src = replace(src, run_id=price.run_id, price=load_price_model(price.run_id, store))
        try:
            positions, pred = yield from positions_for(fold_src, ws, block, cancel)
        except InterruptedError:
            return BacktestRecord("cancelled", run_id=src.run_id, dataset=data)
        start, end = f"{dates[block[0]]:%Y-%m-%d}", f"{dates[block[-1]]:%Y-%m-%d}"
        pieces.append((start, end, positions))
        predicted.append(pred)
        fold_runs.append({"start": start, "end": end,
                          "runs": [price.run_id] + ([fold.run_id] if fold is not price else [])})
    close = pd.Series(ws.close, index=ws.dates)
    predicted = pd.concat(predicted)
    result = with_bands(stitch_blocks(close, pieces, cfg, predicted=predicted, opens=bars.frame["open"],
                                      instrument=bars.instrument, distribution=distribution_of(predicted)),
                        predicted)
    done = record_backtest(store, src, model_ref, data, bars, cfg, result, walk_forward=fold_runs,
                           in_sample=False)  # every block traded out of its fold's sample
    yield Progress(len(blocks), len(blocks), "done")
    return done


__all__ = ["cut_at", "fold_blocks", "walk_forward_job"]
