"""The model's portfolio on the bundled us12 universe beside the four baselines (issue 15's reference table).

Run: .venv/bin/python benchmarks/bench_portfolio.py [--steps 100 | --run RUN] [--db FILE]
A tiny quantile price network trained here for --steps steps on the twelve members, from --from, with
calendar cut dates (training to --train-end, validation to --val-end; recorded in --db, so a later call can
pass --run); then the test years after --val-end forecast once for every member and traded as portfolios
(top-k and mean-variance) at --cost-bps, filled at the close (us12 has closes only), next to 1/N, inverse volatility,
the universe's equal-weight index and 12-1 momentum on the same days. One markdown table: total return,
CAGR, Sharpe with its 95 % interval, max drawdown, turnover, average holdings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import PRESETS, BacktestConfig, DataConfig, TrainConfig, n_features, override
from engine.data.universe import load_universe
from engine.events import run_to_end
from engine.jobs.backtest import load_source
from engine.jobs.portfolio import universe_forecasts
from engine.portfolio import Market, PortfolioConfig, portfolio_backtest
from engine.store import RunStore
from engine.training.price import train_price

UNIVERSE = "us12"


def train_model(steps: int, start: str, train_end: str, val_end: str, store: RunStore) -> str:
    """A tiny quantile network pooled over the universe's members, cut at the calendar dates."""
    members = [f"{UNIVERSE}:{t.instrument}" for t in load_universe(UNIVERSE).tables]
    data_cfg = DataConfig(start=start, train_end=train_end, val_end=val_end)
    model_cfg = override(PRESETS["tiny"], head="quantile", n_features=n_features(data_cfg))
    train_cfg = TrainConfig(epochs=1000, max_steps=steps, batch_size=32, eval_every=max(1, steps // 2),
                            device="cpu", precision="fp32", seed=0)
    final = run_to_end(train_price(members, model_cfg=model_cfg, data_cfg=data_cfg, train_cfg=train_cfg,
                                   store=store))
    if final.status != "finished":
        raise SystemExit(f"training {final.status}: {final.error}")
    return final.run_id


def row(name: str, m: dict) -> str:
    """One markdown row; the index has no trades, so no turnover or holdings."""
    ci = m.get("sharpe_ci") or [None, None]
    sharpe = f"{m['sharpe']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci[0] is not None else "")
    turnover = f"{m['turnover']:.2f}" if m.get("turnover") is not None else "-"
    holdings = f"{m['average_holdings']:.1f}" if m.get("average_holdings") is not None else "-"
    return (f"| {name} | {m['total_return']:.1%} | {m['cagr']:.1%} | {sharpe} | {m['max_drawdown']:.1%} "
            f"| {turnover} | {holdings} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="start", default="2005-01-01", help="first training day")
    parser.add_argument("--train-end", default="2014-12-31")
    parser.add_argument("--val-end", default="2017-12-31")
    parser.add_argument("--cost-bps", type=float, default=10.0)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", help="a price run to trade (skips training)")
    source.add_argument("--steps", type=int, default=100)
    parser.add_argument("--db", help="the run history (default: the app's)")
    args = parser.parse_args()
    store = RunStore(args.db) if args.db else RunStore()
    began = time.perf_counter()
    run = args.run or train_model(args.steps, args.start, args.train_end, args.val_end, store)
    trained = time.perf_counter() - began
    cfg = BacktestConfig(cost_bps=args.cost_bps, fill="close")
    configs = {"model top-k (k=4, weekly)": PortfolioConfig(method="topk", top_k=4, rebalance=5, max_weight=0.3),
               "model mean-variance (weekly)": PortfolioConfig(method="mean_variance", top_k=4, rebalance=5,
                                                               max_weight=0.3)}
    src, tables = load_source(run, store), load_universe(UNIVERSE).tables
    market = Market.from_tables(tables)
    forecasts = run_to_end(universe_forecasts(src.price, market, tables, src.cuts.test_start, None))
    results = {name: portfolio_backtest(market, forecasts, p, cfg) for name, p in configs.items()}
    first = next(iter(results.values()))
    dates = first.frame.index
    print(f"us12, {dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d} (test: after {args.val_end}), {args.cost_bps:g} bps, "
          f"close fills; model {run} ({'given' if args.run else f'{args.steps} steps, {trained:.0f} s'})\n")
    print("| portfolio | total return | CAGR | Sharpe [95 % CI] | max DD | turnover | avg holdings |")
    print("|---|---|---|---|---|---|---|")
    for name, result in results.items():
        print(row(name, result.metrics))
    for name in ("equal_weight", "inverse_vol", "index", "momentum"):
        print(row(name, first.baselines[name]))
    print(f"\n{time.perf_counter() - began:.0f} s in all")


if __name__ == "__main__":
    main()
