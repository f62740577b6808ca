"""Out-of-sample evaluation: train both stages on some instruments, judge them on others they never saw
(and on the ones they did), after costs, against buy and hold and the naive "tomorrow = today"
forecast, all over the days after the run's test start (one set of calendar cut dates for every
instrument). Prints a markdown table; the README quotes its output.

    python scripts/evaluate.py --train sse spx aapl --test goog spdb --epochs 3

The default cut dates (train to 2008, validate 2009-2010, test from 2011) leave test days to every
bundled series, the short US ones (aapl, goog: to 2013) included; an instrument with none is
named and skipped, never scored on days the model trained on.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Generator
from pathlib import Path

from engine.config import (
    PRESETS,
    BacktestConfig,
    DataConfig,
    StrategyLossConfig,
    StrategyModelConfig,
    TrainConfig,
    override,
)
from engine.data import build_windows, load_bars
from engine.events import Event, Finished, run_to_end
from engine.forecast import encode_windows, load_price_model
from engine.jobs.backtest import backtest_job
from engine.store import RunStore
from engine.training.price import price_metrics, train_price
from engine.training.strategy import train_strategy


def finish(job: Generator[Event, None, Finished]) -> Finished:
    """Train to the end; a run that does not finish ends the script with its error."""
    finished = run_to_end(job)
    if finished.status != "finished":
        raise SystemExit(f"training did not finish: {finished}")
    return finished


def forecast_skill(store: RunStore, price_run: str, data: str, start: str) -> dict[str, float]:
    """MAE of the 1..7-day forecasts vs the naive forecast over days from `start` on."""
    loaded = load_price_model(price_run, store)
    ws = build_windows(load_bars(data, adjust=loaded.data_cfg.adjust), loaded.model_cfg.window,
                       loaded.model_cfg.horizon)
    ends = ws.ends[ws.has_targets(ws.ends) & (ws.dates[ws.ends] >= start)]
    _, scaled = encode_windows(loaded, ws, ends)
    return price_metrics(scaled * loaded.target_scale, ws.targets(ends), ws.close[ends])


def fmt(m: dict, key: str) -> str:
    v = m.get(key)
    return "n/a" if v is None else (f"{v:.2f}" if key == "sharpe" else f"{v:+.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", default=["sse", "spx", "aapl"])
    parser.add_argument("--test", nargs="+", default=["goog", "spdb"])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--strategy-epochs", type=int, default=10)
    parser.add_argument("--cost-bps", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, help="cap both stages (a quick smoke run)")
    parser.add_argument("--db", type=Path, help="run-history file (default: a temporary one)")
    parser.add_argument("--price-run", help="reuse this finished price run (in --db) for stage 1")
    parser.add_argument("--train-end", default="2008-12-31", help="last day a training target may reach")
    parser.add_argument("--val-end", default="2010-12-31", help="last day a validation target may reach")
    args = parser.parse_args()

    store = RunStore(args.db or Path(tempfile.mkdtemp()) / "runs.db")
    price_run = args.price_run or finish(train_price(
        args.train, model_cfg=override(PRESETS[args.preset]), store=store,
        data_cfg=DataConfig(train_end=args.train_end, val_end=args.val_end),
        train_cfg=TrainConfig(epochs=args.epochs, seed=args.seed, max_steps=args.max_steps))).run_id
    strategy = finish(train_strategy(
        price_run, [], model_cfg=StrategyModelConfig(),  # stage 1's instruments and cut dates
        loss_cfg=StrategyLossConfig(cost_bps=args.cost_bps), data_cfg=DataConfig(), store=store,
        train_cfg=TrainConfig(epochs=args.strategy_epochs, seed=args.seed, lr=1e-3,
                              max_steps=args.max_steps)))

    cuts = store.get_run(price_run)["config"]["data"]
    print(f"price run {price_run}, strategy run {strategy.run_id}; costs {args.cost_bps:g} bps; "
          f"train to {cuts['train_end']}, validate to {cuts['val_end']}, test from {cuts['test_start']}\n")
    print("| series | seen in training | period | strategy total | Sharpe | max DD | turnover/yr "
          "| buy & hold total | Sharpe | follow-forecast total | 1-day MAE vs naive |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    skipped = []
    for data in [*args.train, *args.test]:
        try:
            result = run_to_end(backtest_job(strategy.run_id, data, cfg=BacktestConfig(
                cost_bps=args.cost_bps), store=store)).result
        except ValueError as exc:  # no out-of-sample days: named below, never scored in-sample
            skipped.append(f"{data}: {exc}")
            continue
        frame, m, base = result.frame, result.metrics, result.baselines
        skill = forecast_skill(store, price_run, data, str(frame.index[0].date()))
        print(f"| {data} | {'yes (its test period)' if data in args.train else 'no'} "
              f"| {frame.index[0]:%Y-%m-%d} .. {frame.index[-1]:%Y-%m-%d} "
              f"| {fmt(m, 'total_return')} | {fmt(m, 'sharpe')} | {fmt(m, 'max_drawdown')} "
              f"| {m['turnover']:.1f} | {fmt(base['buy_and_hold'], 'total_return')} "
              f"| {fmt(base['buy_and_hold'], 'sharpe')} "
              f"| {fmt(base['follow_forecast'], 'total_return')} "
              f"| {1 - skill['skill_h1']:.3f}x |")
    for line in skipped:
        print(f"\nno out-of-sample days, not scored: {line}")


if __name__ == "__main__":
    main()
