"""A portfolio backtest as a job: a price run forecasts every instrument of a universe, the
portfolio kernel (engine/portfolio) turns the forecasts into weights and trades them, and the
result is recorded in the history as a backtest whose config says kind "portfolio".

The record's frame_json holds what the portfolio panel draws: "daily" (equity, baselines, the risk
model's predicted volatility and VaR), "weights" (the book at each close), "contribution" (sum of
w_{t-1} r_t per name) and "signals" (the long CSV's table).

Walk-forward (portfolio_walk_forward_job) retrains the price run on expanding folds cut as for a
single instrument (engine/jobs/walkforward.py), forecasts each fold's block of days with its own
model, and trades the stitched forecasts as one portfolio.

Until the universe (pooled) model lands, each instrument is forecast by the run's price network on
its own windows, in batches. The default period starts at the model's test start (cut dates).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from engine.checkpoint import file_sha256
from engine.config import BacktestConfig, to_dict
from engine.data.universe import load_universe
from engine.events import CancelToken, Event, Progress
from engine.forecast import load_price_model, model_windows, quantile_progress
from engine.jobs.backtest import BacktestRecord, Source, load_source
from engine.jobs.walkforward import cut_at, fold_blocks
from engine.portfolio import (
    Forecasts,
    Market,
    PortfolioConfig,
    PortfolioResult,
    export_portfolio_signals,
    portfolio_backtest,
)
from engine.portfolio.signals import portfolio_signals
from engine.store import RunStore
from engine.training.price import run_price
from engine.training.recipe import RunRecipe


def _split(frame: pd.DataFrame) -> dict:
    return json.loads(frame.to_json(orient="split", date_format="iso", double_precision=15))


def universe_forecasts(price, market: Market, tables, start: str | None, end: str | None,
                       cancel: CancelToken | None = None) -> Generator[Progress, None, Forecasts]:
    """[D, N, H] median / q10 / q90 log returns of every instrument on its decision days (NaN elsewhere)."""
    d, n, h = len(market.dates), len(tables), price.model_cfg.horizon
    median, q10, q90 = (np.full((d, n, h), np.nan) for _ in range(3))
    for i, bars in enumerate(tables):
        ws = model_windows(price, bars)
        ends = ws.ends
        inside = np.ones(len(ends), dtype=bool)
        if start:
            inside &= ws.dates[ends] >= pd.Timestamp(start)
        if end:
            inside &= ws.dates[ends] <= pd.Timestamp(end)
        ends = ends[inside]
        if not len(ends):
            continue
        fc = yield from quantile_progress(price, ws, ends, cancel, f"Forecasting {bars.instrument}")
        rows = market.dates.get_indexer(ws.dates[ends])
        median[rows, i] = fc.returns
        q10[rows, i] = fc.quantile_returns[..., fc.levels.index(0.1)]
        q90[rows, i] = fc.quantile_returns[..., fc.levels.index(0.9)]
    return Forecasts(median, q10, q90)


@dataclass
class PortfolioRecord(BacktestRecord):
    period: tuple[str, str] = ("", "")


def contributions(weights: pd.DataFrame, market: Market) -> pd.Series:
    """Each name's sum over the days of w_{t-1} r_t (the book held into day t times its simple
    return): additive, before costs and not compounded."""
    span = market.dates.get_indexer(weights.index)
    r = np.nan_to_num(market.returns()[span])
    held = np.vstack([np.zeros((1, weights.shape[1])), weights.to_numpy()[:-1]])
    return pd.Series((held * r).sum(0), index=weights.columns)


def _record(store: RunStore, src: Source, model_ref: str, data: str, market: Market, forecasts: Forecasts,
            pcfg: PortfolioConfig, cfg: BacktestConfig, **extra) -> PortfolioRecord:
    """Backtest the forecasts and record it; extra: config keys (walk_forward, in_sample)."""
    result: PortfolioResult = portfolio_backtest(market, forecasts, pcfg, cfg)
    signals = portfolio_signals(result, market, forecasts)
    period = (f"{result.frame.index[0]:%Y-%m-%d}", f"{result.frame.index[-1]:%Y-%m-%d}")
    in_sample = bool(src.cuts and pd.Timestamp(period[0]) < pd.Timestamp(src.cuts.test_start))
    config = {**to_dict(cfg), "portfolio": to_dict(pcfg), "kind": "portfolio", "source": str(model_ref),
              "instruments": market.instruments, "checkpoint_sha256": src.sha256, "start": period[0],
              "end": period[1], "trained_on": src.datasets, "notes": result.notes, "in_sample": in_sample, **extra}
    risk = {k: v for k, v in result.risk.items() if k != "daily"}
    daily = result.frame.join(result.risk["daily"].rename(columns={"volatility": "predicted_volatility"}))
    contribution = contributions(result.weights, market)
    backtest_id = store.add_backtest(src.run_id, dataset=data, config=config,
                                     metrics={**result.metrics, "risk": risk}, baselines=result.baselines,
                                     frame_json={"daily": _split(daily.reset_index()),
                                                 "weights": _split(result.weights.rename_axis("date").reset_index()),
                                                 "contribution": contribution.to_dict(),
                                                 "signals": _split(signals)})
    return PortfolioRecord("finished", backtest_id, src.run_id, data, config, None, period=period)


def portfolio_job(model_ref: str, data: str, *, pcfg: PortfolioConfig, cfg: BacktestConfig, store: RunStore,
                  cancel: CancelToken | None = None) -> Generator[Event, None, PortfolioRecord]:
    """Backtest pcfg's portfolio of `data` (a universe) on `model_ref`'s forecasts and record it."""
    yield Progress(0, 1, "Loading the model and the universe")
    src = load_source(model_ref, store)
    universe = load_universe(data)
    if not universe.tables:
        raise ValueError(f"{data}: no instruments imported")
    market = Market.from_tables(universe.tables)
    start = cfg.start or (src.cuts.test_start if src.cuts else None)
    try:
        forecasts = yield from universe_forecasts(src.price, market, universe.tables, start, cfg.end, cancel)
    except InterruptedError:
        return PortfolioRecord("cancelled", run_id=src.run_id, dataset=data)
    yield Progress(0, 1, "Portfolio accounting, baselines and risk")
    record = _record(store, src, model_ref, data, market, forecasts, pcfg, cfg)
    yield Progress(1, 1, "Recorded")
    return record


def portfolio_walk_forward_job(model_ref: str, data: str, *, folds: int, pcfg: PortfolioConfig,
                               cfg: BacktestConfig, store: RunStore, fraction: float = 0.5,
                               cancel: CancelToken | None = None) -> Generator[Event, None, PortfolioRecord]:
    """Retrain `model_ref`'s price run `folds` times, each on data up to the day before its block
    (the blocks of the universe's longest member, as for one instrument), forecast the block's days of
    every member with that fold's model and trade the stitched forecasts as one portfolio."""
    if folds < 1:
        raise ValueError("walk-forward needs at least one fold")
    src = load_source(model_ref, store)
    if src.run_id is None:
        raise ValueError("walk-forward retrains a run: give a run id, not a checkpoint file")
    recipe = RunRecipe.from_record(store.get_run(src.run_id))
    if recipe.price_run:
        recipe = RunRecipe.from_record(store.get_run(recipe.price_run))
    universe = load_universe(data)
    if not universe.tables:
        raise ValueError(f"{data}: no instruments imported")
    market = Market.from_tables(universe.tables)
    longest = max(universe.tables, key=lambda t: len(t.frame))
    ws = model_windows(src.price, longest)
    blocks = fold_blocks(ws, folds, fraction)
    d, n, h = len(market.dates), len(universe.tables), src.price.model_cfg.horizon
    stitched = Forecasts(*(np.full((d, n, h), np.nan) for _ in range(3)))
    fold_runs = []
    for k, block in enumerate(blocks):
        yield Progress(k, len(blocks), f"fold {k + 1}/{len(blocks)}: retraining")
        cut = f"{ws.dates[block[0] - 1]:%Y-%m-%d}"
        start, end = f"{ws.dates[block[0]]:%Y-%m-%d}", f"{ws.dates[block[-1]]:%Y-%m-%d}"
        price = yield from run_price(cut_at(recipe, cut), store=store, cancel=cancel)
        if price.status != "finished":
            return PortfolioRecord(price.status, run_id=src.run_id, dataset=data, error=price.error)
        try:
            fc = yield from universe_forecasts(load_price_model(price.run_id, store), market, universe.tables,
                                               start, end, cancel)
        except InterruptedError:
            return PortfolioRecord("cancelled", run_id=src.run_id, dataset=data)
        for whole, part in ((stitched.median, fc.median), (stitched.q10, fc.q10), (stitched.q90, fc.q90)):
            np.copyto(whole, part, where=np.isfinite(part))
        fold_runs.append({"start": start, "end": end, "trained_to": cut, "runs": [price.run_id]})
    yield Progress(len(blocks), len(blocks), "Portfolio accounting, baselines and risk")
    # every block is traded out of its fold's sample: the source's own cut dates do not apply
    return _record(store, src, model_ref, data, market, stitched, pcfg,
                   replace(cfg, start=None, end=None), walk_forward=fold_runs, in_sample=False)


def load_portfolio_frames(record: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """A recorded portfolio backtest's daily frame and weights (indexed by date) and contributions."""
    data = record["frame_json"]
    data = json.loads(data) if isinstance(data, str) else data
    if "weights" not in data:
        raise ValueError(f"backtest {record['backtest_id']} was recorded before portfolios kept their weights: "
                         "run it again")
    daily, weights = (pd.DataFrame(data[k]["data"], columns=data[k]["columns"]) for k in ("daily", "weights"))
    daily, weights = (f.assign(date=pd.to_datetime(f["date"])).set_index("date") for f in (daily, weights))
    return daily.astype(float), weights.astype(float), pd.Series(data["contribution"], dtype=float)


def export_portfolio_backtest(store: RunStore, record: dict, path: str | Path) -> tuple[Path, int]:
    """Write a recorded portfolio backtest's long signals CSV atomically and record the export."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{path}: folder {path.parent} does not exist")
    data = record["frame_json"]
    data = json.loads(data) if isinstance(data, str) else data
    table = pd.DataFrame(data["signals"]["data"], columns=data["signals"]["columns"])
    rows = export_portfolio_signals(table, path, run_id=record["run_id"] or "",
                                    checkpoint_sha=record["config"]["checkpoint_sha256"])
    store.add_export(record["backtest_id"], path, rows, file_sha256(path))
    return path, rows


__all__ = ["PortfolioRecord", "contributions", "export_portfolio_backtest", "load_portfolio_frames", "portfolio_job",
           "portfolio_walk_forward_job", "universe_forecasts"]
