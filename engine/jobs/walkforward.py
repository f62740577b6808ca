"""Walk-forward backtest: retrain on expanding windows, trade each following block out of sample,
stitch the blocks into one backtest.

Each fold retrains the source run's stages with the same configs on the source's data cut at the
day before the fold's block (targets of the last training window end there), so no fold ever
sees a close it trades on. Fold runs are ordinary runs in the history; the stitched backtest
records their ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pandas as pd

from engine.backtest.run import BacktestResult, walk_forward
from engine.config import (
    BacktestConfig,
    DataConfig,
    StrategyLossConfig,
    StrategyModelConfig,
    TrainConfig,
    from_dict,
)
from engine.data import WindowSet, build_windows, load_bars, walk_forward_folds
from engine.events import CancelToken, Event, Finished, Progress
from engine.forecast import load_price_model
from engine.jobs.backtest import backtest_frame_json, load_source, positions_for
from engine.policy import load_strategy_model
from engine.store import RunStore
from engine.training.price import train_price
from engine.training.strategy import train_strategy


def _configs(record: dict) -> tuple[DataConfig, TrainConfig]:
    cfg = record["config"]
    return from_dict(DataConfig, cfg["data"]), from_dict(TrainConfig, cfg["train"])


def _train(events: Iterator[Event]) -> Iterator[Event]:
    """Pass a fold's training events through; a fold that does not finish ends the job."""
    for event in events:
        if isinstance(event, Finished):
            if event.status != "finished":
                raise FoldFailed(event)
            return event.run_id
        yield event
    raise RuntimeError("a fold's training ended without a Finished event")


class FoldFailed(Exception):
    def __init__(self, finished: Finished) -> None:
        super().__init__(finished.error or finished.status)
        self.finished = finished


def fold_blocks(ws: WindowSet, folds: int, fraction: float) -> list[np.ndarray]:
    """Day indices of each fold's out-of-sample block: the last `fraction` of the usable
    history cut into `folds` equal blocks, in time order."""
    usable = int(ws.has_targets(ws.ends).sum())
    size = max(2, int(usable * fraction) // folds)
    splits = walk_forward_folds(ws, folds, size, embargo=ws.horizon, min_train=ws.window)
    return [s.test for s in splits]


def walk_forward_job(source: str, data: str, *, folds: int, cfg: BacktestConfig, store: RunStore,
                     fraction: float = 0.5, cancel: CancelToken | None = None) -> Iterator[Event]:
    """Retrain `source` (a price or strategy run) `folds` times and backtest the stitched blocks."""
    if folds < 1:
        raise ValueError("walk-forward needs at least one fold")
    src = load_source(source, store)
    if src.run_id is None:
        raise ValueError("walk-forward retrains a run: give a run id, not a checkpoint file")
    record = store.get_run(src.run_id)
    price_record = store.get_run(record["parent_run"]) if src.kind == "strategy" else record
    data_cfg, price_train = _configs(price_record)
    price_sources = list(price_record["config"]["sources"])
    model_cfg = src.price.model_cfg
    if src.kind == "strategy":
        strat_data, strat_train = _configs(record)
        strat_model = from_dict(StrategyModelConfig, record["config"]["model"])
        strat_loss = from_dict(StrategyLossConfig, record["config"]["loss"])
    bars = load_bars(data, adjust=data_cfg.adjust)
    ws = build_windows(bars, model_cfg.window, model_cfg.horizon)
    dates, blocks = ws.dates, fold_blocks(ws, folds, fraction)
    pieces, predicted, fold_runs = [], [], []
    try:
        for k, block in enumerate(blocks):
            yield Progress(k, len(blocks), f"fold {k + 1}/{len(blocks)}: retraining")
            cut = f"{dates[block[0] - 1]:%Y-%m-%d}"
            price_run = yield from _train(train_price(
                price_sources, model_cfg=model_cfg, train_cfg=price_train, store=store,
                data_cfg=replace(data_cfg, end=cut, test_fraction=0.0), cancel=cancel))
            runs = [price_run]
            if src.kind == "strategy":
                runs.append((yield from _train(train_strategy(
                    price_run, src.sources, model_cfg=strat_model, loss_cfg=strat_loss,
                    data_cfg=replace(strat_data, end=cut, test_fraction=0.0),
                    train_cfg=strat_train, store=store, cancel=cancel))))
                strategy = load_strategy_model(runs[-1], store)
                fold_src = replace(src, run_id=runs[-1], price=strategy.price, strategy=strategy)
            else:
                fold_src = replace(src, run_id=price_run, price=load_price_model(price_run, store))
            positions, pred = positions_for(fold_src, ws, block)
            start, end = f"{dates[block[0]]:%Y-%m-%d}", f"{dates[block[-1]]:%Y-%m-%d}"
            pieces.append((start, end, positions))
            predicted.append(pred)
            fold_runs.append({"start": start, "end": end, "runs": runs})
    except FoldFailed as exc:
        yield Finished(run_id="", status=exc.finished.status, error=exc.finished.error)
        return
    close = pd.Series(ws.close, index=ws.dates)
    result: BacktestResult = walk_forward(close, pieces, cfg, predicted=pd.concat(predicted))
    frame = result.frame
    config = {**vars(cfg), "start": f"{frame.index[0]:%Y-%m-%d}",
              "end": f"{frame.index[-1]:%Y-%m-%d}", "source": source, "kind": src.kind,
              "instrument": bars.instrument, "checkpoint_sha256": src.sha256,
              "trained_on": src.sources, "walk_forward": fold_runs}
    metrics = {**result.metrics, "per_regime": result.per_regime}
    backtest_id = store.add_backtest(src.run_id, dataset=data, config=config, metrics=metrics,
                                     baselines=result.baselines,
                                     frame_json=backtest_frame_json(result))
    yield Progress(len(blocks), len(blocks), "done")
    yield Finished(run_id=backtest_id, status="finished", metrics=json.loads(json.dumps(metrics)))


__all__ = ["fold_blocks", "walk_forward_job"]
