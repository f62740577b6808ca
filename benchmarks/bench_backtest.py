"""Backtest throughput: batched position paths (bars/s) next to the event-driven backtesting.py.

Run: .venv/bin/python benchmarks/bench_backtest.py [--paths N] [--repeat N] [--job RUN --db PATH]
With --job, also the wall time of a whole backtest job of that price or strategy run on the bundled
SPX (its default test period: forecasts, the strategy's encoding, accounting, baselines and every
Sharpe bootstrap), best of --repeat, recorded in a scratch copy of the history.
Both engines get the same real closes (SSE Composite), the same positions 0..10 and the same
commission, trade at the close with (practically) fractional shares, and must agree on the
final equity to 1e-6. backtesting.py is optional (`pip install backtesting`).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.backtest.run import backtest_equity
from engine.config import BacktestConfig
from engine.events import run_to_end
from engine.jobs.backtest import backtest_job
from engine.store import RunStore

DATA = Path(__file__).resolve().parents[1] / "assets" / "data" / "sh000001_sse_composite.csv"
COST = 10 / 1e4  # 10 bps per unit of turnover
CASH = 1e15  # so whole shares approximate fractional ones to ~1e-11 of equity


def load_close(days: int) -> pd.Series:
    frame = pd.read_csv(DATA, thousands=",", parse_dates=["时间"], index_col="时间")
    return frame["收盘"].astype(np.float64).iloc[-days:]


def random_positions(paths: int, days: int, seed: int = 0) -> np.ndarray:
    """Sticky random positions 0..10 (changed on ~20 % of days); day 0 in cash, as backtesting.py starts."""
    rng = np.random.default_rng(seed)
    change = rng.random((paths, days)) < 0.2
    change[:, 0] = True
    draws = np.where(change, rng.integers(0, 11, (paths, days)), 0)
    last_change = np.maximum.accumulate(np.where(change, np.arange(days), 0), axis=1)
    positions = np.take_along_axis(draws, last_change, 1)
    positions[:, 0] = 0
    return positions


def time_batched(returns: np.ndarray, positions: np.ndarray, repeat: int) -> dict:
    """Best-of-repeat throughput of the numpy and torch paths."""
    out = {}
    for name, r, p in (("numpy", returns, positions.astype(np.float64)),
                       ("torch", torch.from_numpy(returns), torch.from_numpy(positions.astype(np.float64)))):
        best = min(_timed(lambda r=r, p=p: backtest_equity(r, p, COST)) for _ in range(repeat))
        out[f"{name}_bars_per_s"] = positions.size / best
    return out


def time_job(run: str, db: Path, repeat: int) -> dict:
    """Best wall seconds of backtest_job(run, "spx"), the history copied (sqlite backup) to a scratch
    folder whose runs/ links to the original checkpoints, so the real history gains no rows."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "runs.db"
        with sqlite3.connect(db) as source, sqlite3.connect(scratch) as copy:
            source.backup(copy)
        (Path(tmp) / "runs").symlink_to(Path(db).resolve().parent / "runs")
        store = RunStore(scratch)
        records = []
        best = min(_timed(lambda: records.append(run_to_end(backtest_job(run, "spx", cfg=BacktestConfig(),
                                                                         store=store))))
                   for _ in range(repeat))
    frame = records[-1].result.frame
    return {"job_run": run, "job_days": len(frame), "job_s": best}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def backtesting_py_equity(close: pd.Series, positions: np.ndarray) -> tuple[float, float] | None:
    """Final equity (per unit of starting cash) and seconds of backtesting.py on one path.

    Orders placed at close t fill at close t (trade_on_close), so a copy of the last bar is
    appended to let the last decision fill. The strategy sizes each order to end at exposure
    w_t of its post-commission equity, the engine's rebalancing rule; cash, commissions and
    P&L are backtesting.py's own bookkeeping.
    """
    try:
        from backtesting import Backtest, Strategy
    except ImportError:
        return None
    weights = np.append(positions, positions[-1]) / 10.0

    class Rebalance(Strategy):
        def init(self):
            pass

        def next(self):
            w, price, equity = weights[len(self.data) - 1], self.data.Close[-1], self.equity
            held = self.position.size * price / equity
            sign = 1.0 if w >= held else -1.0
            post = equity * (1 + sign * COST * held) / (1 + sign * COST * w)
            delta = round(w * post / price - self.position.size)
            if delta > 0:
                self.buy(size=delta)
            elif delta < 0:
                self.sell(size=-delta)

    bars = pd.concat([close, close.iloc[-1:].set_axis([close.index[-1] + pd.Timedelta(days=1)])])
    ohlc = pd.DataFrame({c: bars.to_numpy() for c in ("Open", "High", "Low", "Close")}, index=bars.index)
    bt = Backtest(ohlc, Rebalance, cash=CASH, commission=COST, margin=0.5, trade_on_close=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.run()
    return float(stats["Equity Final [$]"]) / CASH, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=512)
    parser.add_argument("--days", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--job", metavar="RUN", help="also time a whole backtest job of this run on SPX")
    parser.add_argument("--db", type=Path, help="the history holding --job's run")
    args = parser.parse_args(argv)
    close = load_close(args.days)
    returns = np.concatenate(([0.0], close.to_numpy()[1:] / close.to_numpy()[:-1] - 1.0))
    positions = random_positions(args.paths, len(close))
    result = {"bars": positions.size, "cost": COST, "torch_threads": torch.get_num_threads(),
              **time_batched(returns, positions, args.repeat)}
    reference = backtesting_py_equity(close.iloc[:1000], positions[0, :1000])
    if reference is None:
        result["backtesting_py"] = "not installed (pip install backtesting)"
    else:
        ours = float(backtest_equity(returns[:1000], positions[0, :1000].astype(np.float64), COST))
        result.update(backtesting_py_bars_per_s=1000 / reference[1], engine_equity=ours,
                      backtesting_py_equity=reference[0], abs_diff=abs(ours - reference[0]),
                      agree_1e6=abs(ours - reference[0]) <= 1e-6)
    if args.job:
        result.update(time_job(args.job, args.db or RunStore().path, args.repeat))
    print(json.dumps(result) if args.json else "\n".join(f"{k:>26}: {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
