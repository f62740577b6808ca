"""Portfolio signals CSV in long format: one row per date and instrument, written like the
single-instrument file (engine/backtest/signals.py): atomically, UTF-8 with a BOM, formula-safe.

weight: on a decision day (rebalance 1) the target decided at that close, traded at the next fill;
on other days (rebalance 0) the weight the book holds at that close, nothing traded. pred_t*,
q10_t*, q90_t*: the predicted closes (median, 10 % and 90 % quantiles) known at that close.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from engine.atomic import atomic_write
from engine.backtest.signals import neutralise
from engine.config import HORIZON
from engine.portfolio.backtest import Forecasts, Market, PortfolioResult

PRICE_BANDS = ("pred", "q10", "q90")
COLUMNS = (["date", "instrument", "weight", "rebalance"]
           + [f"{band}_t{h}" for band in PRICE_BANDS for h in range(1, HORIZON + 1)]
           + ["run_id", "checkpoint_sha256"])


def portfolio_signals(result: PortfolioResult, market: Market, forecasts: Forecasts) -> pd.DataFrame:
    """The long table (without run id and checkpoint) of a portfolio backtest: rows for each name
    with a close that day or a weight, in date then instrument order."""
    dates, names = result.weights.index, list(result.weights.columns)
    span = market.dates.get_indexer(dates)
    decided = np.isfinite(result.targets.to_numpy()).all(-1)
    weight = np.where(decided[:, None], result.targets.to_numpy(), result.weights.to_numpy())
    close = market.close[span]
    keep = np.isfinite(close) | (weight != 0)
    day, name = np.nonzero(keep)
    table = pd.DataFrame({"date": dates[day].strftime("%Y-%m-%d"), "instrument": np.asarray(names)[name],
                          "weight": weight[day, name], "rebalance": decided[day].astype(int)})
    for band, logs in zip(PRICE_BANDS, (forecasts.median, forecasts.q10, forecasts.q90)):
        prices = close[day, name][:, None] * np.exp(logs[span][day, name, :HORIZON])
        for h in range(HORIZON):
            table[f"{band}_t{h + 1}"] = prices[:, h] if h < prices.shape[1] else np.nan
    return table


def export_portfolio_signals(table: pd.DataFrame, path: str | Path, *, run_id: str, checkpoint_sha: str) -> int:
    """Write portfolio_signals' table to path atomically (text cells formula-safe); the row count."""
    table = table.assign(run_id=run_id, checkpoint_sha256=checkpoint_sha)
    for name in ("date", "instrument", "run_id", "checkpoint_sha256"):
        table[name] = neutralise(table[name])
    with atomic_write(Path(path), "w", encoding="utf-8-sig", newline="") as fh:
        table[COLUMNS].to_csv(fh, index=False, na_rep="", lineterminator="\r\n")
    return len(table)


__all__ = ["COLUMNS", "export_portfolio_signals", "portfolio_signals"]
