"""A backtest as a job: a trained run (or a checkpoint file) on one dataset, recorded in the history.

A strategy run trades its own deterministic positions; a price run trades "follow the forecast".
The default period is the held-out test part of the instrument when the model was trained on it,
and the whole usable history of an instrument it never saw.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from engine.backtest.signals import export_signals
from engine.backtest.run import BacktestResult, forecast_positions, run_backtest
from engine.config import BacktestConfig, DataConfig, to_dict
from engine.data import BarTable, WindowSet, build_windows, chronological_split, load_bars
from engine.forecast import LoadedPriceModel, forecast_many, is_run_id, load_price_model
from engine.policy import LoadedStrategy, load_strategy_model, strategy_positions
from engine.store import RunStore
from engine.training.checkpoint import file_sha256, load_checkpoint
from engine.training.events import CancelToken, Event, Finished, Progress

PRED_COLUMNS = [f"pred_{h}" for h in range(1, 8)]


@dataclass
class Source:
    """What is being backtested: a strategy (its positions) or a price network (follow-forecast)."""

    kind: str  # "strategy" | "price"
    run_id: str | None
    price: LoadedPriceModel
    strategy: LoadedStrategy | None
    data_cfg: DataConfig
    sources: list[str]  # the data it was trained on

    @property
    def sha256(self) -> str:
        return (self.strategy or self.price).sha256


def load_source(source: str, store: RunStore) -> Source:
    """A run id (its best checkpoint) or a checkpoint path; never executes code from the file."""
    run_id = source if is_run_id(source) else None
    if run_id is not None:
        record = store.get_run(run_id)
        if record is None:
            raise ValueError(f"no run {run_id!r} in {store.path}")
        kind, trained_on = record["kind"], list(record["config"].get("sources", []))
    else:
        configs = load_checkpoint(source).get("configs", {})
        kind = "strategy" if "price" in configs else "price"
        trained_on = []
    if kind == "strategy":
        strategy = load_strategy_model(source, store)
        trained_on = trained_on or list(strategy.price.configs.get("sources", []))
        return Source("strategy", run_id, strategy.price, strategy, strategy.data_cfg, trained_on)
    if kind != "price":
        raise ValueError(f"run {source!r} is a {kind} run: backtest a price or strategy run")
    price = load_price_model(source, store)
    return Source("price", run_id, price, None, price.data_cfg, trained_on)


def default_period(src: Source, data: str, bars: BarTable) -> tuple[str, str]:
    """The held-out test span when `data` was part of training (split exactly as in training,
    on the same date range), else the whole usable history."""
    window = src.price.model_cfg.window
    first = window - 1 + (src.data_cfg.seq_len - 1 if src.strategy else 0)
    dates = bars.frame.index
    start = dates[min(first, len(dates) - 1)]
    if data in src.sources:
        cfg = src.data_cfg
        trained = build_windows(replace(bars, frame=bars.frame.loc[cfg.start:cfg.end]),
                                window, src.price.model_cfg.horizon)
        test = chronological_split(trained, cfg.val_fraction, cfg.test_fraction,
                                   embargo=cfg.horizon).test
        if len(test):
            start = max(start, trained.dates[int(test[0])])
    return f"{start:%Y-%m-%d}", f"{dates[-1]:%Y-%m-%d}"


def overlaps_training(src: Source, data: str, bars: BarTable, start: str) -> bool:
    """True when a backtest from `start` on `data` would score days the model trained or
    validated on (the user gets a warning, not a refusal)."""
    held_out, _ = default_period(src, data, bars)
    return data in src.sources and pd.Timestamp(start) < pd.Timestamp(held_out)


def decision_days(ws: WindowSet, start: str, end: str, first: int) -> np.ndarray:
    days = np.arange(len(ws.dates))
    inside = (ws.dates >= pd.Timestamp(start)) & (ws.dates <= pd.Timestamp(end)) & (days >= first)
    return days[inside]


def backtest_frame_json(result: BacktestResult) -> str:
    return result.frame.reset_index().to_json(orient="split", date_format="iso", double_precision=15)


def load_backtest_frame(record: dict) -> pd.DataFrame:
    """The daily frame a backtest record holds (as run_backtest returned it)."""
    data = record["frame_json"]
    if isinstance(data, str):
        data = json.loads(data)
    frame = pd.DataFrame(data["data"], columns=data["columns"])
    frame["date"] = pd.to_datetime(frame["date"]).dt.tz_localize(None)
    frame["regime"] = frame["regime"].fillna("").astype(str)
    return frame.set_index("date")


def positions_for(src: Source, ws: WindowSet, days: np.ndarray) -> tuple[pd.Series, pd.DataFrame]:
    """What `src` decides on decision days of one instrument: positions 0..10 and the 7
    predicted closes, both indexed by date."""
    dates = ws.dates[days]
    predicted = pd.DataFrame(forecast_many(src.price, ws, days), index=dates, columns=PRED_COLUMNS)
    if src.strategy is not None:
        return pd.Series(strategy_positions(src.strategy, ws, days), index=dates), predicted
    close = pd.Series(ws.close, index=ws.dates)
    return forecast_positions(close, predicted).loc[dates], predicted


def run_source(src: Source, bars: BarTable, cfg: BacktestConfig, data: str,
               cancel: CancelToken | None = None) -> BacktestResult:
    """Positions and forecasts of `src` over cfg's period (default: default_period)."""
    ws = build_windows(bars, src.price.model_cfg.window, src.price.model_cfg.horizon)
    start, end = default_period(src, data, bars)
    cfg = replace(cfg, start=cfg.start or start, end=cfg.end or end)
    first = ws.window - 1 + (src.data_cfg.seq_len - 1 if src.strategy else 0)
    days = decision_days(ws, cfg.start, cfg.end, first)
    if len(days) < 2:
        raise ValueError(f"{data}: fewer than two decision days between {cfg.start} and {cfg.end} "
                         f"(the first day with enough history is {ws.dates[first]:%Y-%m-%d})")
    if cancel is not None and cancel.cancelled:
        raise InterruptedError
    positions, predicted = positions_for(src, ws, days)
    close = pd.Series(ws.close, index=ws.dates)
    return run_backtest(close, positions, cfg, predicted=predicted)


def backtest_job(source: str, data: str, *, cfg: BacktestConfig, store: RunStore,
                 cancel: CancelToken | None = None) -> Iterator[Event]:
    """Backtest `source` on `data`; bad input raises before anything is recorded. The final
    Finished event carries the backtest id as run_id and the metrics."""
    yield Progress(0, 3, "loading the model")
    src = load_source(source, store)
    bars = load_bars(data, adjust=src.data_cfg.adjust)
    yield Progress(1, 3, "forecasting and deciding positions")
    try:
        result = run_source(src, bars, cfg, data, cancel)
    except InterruptedError:
        yield Finished(run_id="", status="cancelled")
        return
    yield Progress(2, 3, "recording the backtest")
    frame = result.frame
    config = {**to_dict(cfg), "start": f"{frame.index[0]:%Y-%m-%d}",
              "end": f"{frame.index[-1]:%Y-%m-%d}", "source": str(source), "kind": src.kind,
              "instrument": bars.instrument, "checkpoint_sha256": src.sha256,
              "trained_on": src.sources}
    metrics = {**result.metrics, "per_regime": result.per_regime}
    backtest_id = store.add_backtest(src.run_id, dataset=data, config=config, metrics=metrics,
                                     baselines=result.baselines,
                                     frame_json=backtest_frame_json(result))
    yield Progress(3, 3, "done")
    yield Finished(run_id=backtest_id, status="finished", metrics=json.loads(json.dumps(metrics)))


def export_backtest_signals(store: RunStore, backtest_id: str, path: str | Path) -> tuple[Path, int]:
    """Write a recorded backtest's signals CSV atomically and record the export in the history."""
    record = store.get_backtest(backtest_id)
    if record is None:
        raise ValueError(f"no backtest {backtest_id!r} in {store.path}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{path}: folder {path.parent} does not exist")
    config = record["config"]
    rows = export_signals(load_backtest_frame(record), path, instrument=config["instrument"],
                          run_id=record["run_id"] or "", checkpoint_sha=config["checkpoint_sha256"])
    store.add_export(backtest_id, path, rows, file_sha256(path))
    return path, rows


__all__ = ["backtest_job", "export_backtest_signals", "load_source", "run_source", "default_period", "positions_for", "overlaps_training", "load_backtest_frame",
           "Source", "PRED_COLUMNS"]
