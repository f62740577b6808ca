"""A portfolio backtest as a job: a price run forecasts every instrument of a universe, the
portfolio kernel (engine/portfolio) turns the forecasts into weights and trades them, and the
result is recorded in the history as a backtest whose config says kind "portfolio".

Until the universe (pooled) model lands, each instrument is forecast by the run's price network on
its own windows, in batches. The default period starts at the model's test start (cut dates).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.checkpoint import file_sha256
from engine.config import BacktestConfig, to_dict
from engine.data.universe import load_universe
from engine.events import CancelToken, Event, Progress
from engine.forecast import model_windows, quantile_progress
from engine.jobs.backtest import BacktestRecord, load_source
from engine.portfolio import Forecasts, Market, PortfolioConfig, export_portfolio_signals, portfolio_backtest
from engine.portfolio.signals import portfolio_signals
from engine.store import RunStore


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
    result = portfolio_backtest(market, forecasts, pcfg, cfg)
    signals = portfolio_signals(result, market, forecasts)
    period = (f"{result.frame.index[0]:%Y-%m-%d}", f"{result.frame.index[-1]:%Y-%m-%d}")
    config = {**to_dict(cfg), "portfolio": to_dict(pcfg), "kind": "portfolio", "source": str(model_ref),
              "instruments": market.instruments, "checkpoint_sha256": src.sha256, "start": period[0],
              "end": period[1], "trained_on": src.datasets, "notes": result.notes,
              "in_sample": bool(src.cuts and pd.Timestamp(period[0]) < pd.Timestamp(src.cuts.test_start))}
    risk = {k: v for k, v in result.risk.items() if k != "daily"}
    backtest_id = store.add_backtest(src.run_id, dataset=data, config=config,
                                     metrics={**result.metrics, "risk": risk}, baselines=result.baselines,
                                     frame_json={"daily": _split(result.frame.reset_index()),
                                                 "signals": _split(signals)})
    yield Progress(1, 1, "Recorded")
    return PortfolioRecord("finished", backtest_id, src.run_id, data, config, None, period=period)


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


__all__ = ["PortfolioRecord", "export_portfolio_backtest", "portfolio_job", "universe_forecasts"]
