"""Out-of-sample evaluation: train both stages on some instruments, judge them on others they never saw
(and on the ones they did), after costs, against buy and hold and the naive "tomorrow = today"
forecast, all over the days after the run's test start (one set of calendar cut dates for every
instrument). Prints a markdown table; the README quotes its output.

    python scripts/evaluate.py --train sse spx aapl --test goog spdb --epochs 3 --seeds 5

With --seeds N each stage is trained N times (seeds seed..seed+N-1): N price networks and their
seed ensemble, then N strategies on that ensemble and theirs. Per series it prints the mean and
standard deviation over the seeds and the ensemble's row, with the Sharpe 95 % interval and the
probabilistic Sharpe (vs 0) beside the point figures, and the 1-day forecast MAE ratio of `evaluate`
(model MAE / zero-return MAE; the seeds row: over the N price networks).

The default cut dates (train to 2008, validate 2009-2010, test from 2011) leave test days to every
bundled series, the short US ones (aapl, goog: to 2013) included; an instrument with none is
named and skipped, never scored on days the model trained on.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np

from engine.config import (
    PRESETS,
    BacktestConfig,
    DataConfig,
    StrategyLossConfig,
    StrategyModelConfig,
    TrainConfig,
    override,
)
from engine.events import Event, Finished, run_to_end
from engine.jobs.backtest import backtest_job
from engine.jobs.evaluate import evaluate_job
from engine.store import RunStore
from engine.training.ensemble import train_seeds
from engine.training.price import train_price
from engine.training.strategy import train_strategy


def trained(make_job: Callable[[int], Generator[Event, None, Finished]], seed: int, n: int,
            store: RunStore) -> tuple[str, list[str]]:
    """(model run, member runs): one run for n = 1, else the n seed runs and their ensemble; a run
    that does not finish ends the script with its error."""
    result = run_to_end(train_seeds(make_job, seed, n, store))
    if result.members[-1].status != "finished":
        raise SystemExit(f"training did not finish: {result.members[-1]}")
    members = [m.run_id for m in result.members]
    return (result.ensemble.run_id if n > 1 else members[0]), members


def mae_ratio(store: RunStore, run: str, data: str, start: str) -> float:
    """evaluate's 1-day MAE ratio (model / zero-return forecast) over forecasts from `start` on."""
    report = run_to_end(evaluate_job(run, [data], store=store, start=start))
    (figures,) = report.instruments.values()
    return next(h["mae_ratio"] for h in figures["horizons"] if h["h"] == 1)


def pct(v: float | None) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:+.1%}"


def num(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def spread(values: list[float | None], fmt: Callable[[float | None], str]) -> str:
    """mean ± std over seeds (sample std; n/a where a member had no value)."""
    if any(v is None for v in values):
        return "n/a"
    a = np.asarray(values, dtype=np.float64)
    return f"{fmt(a.mean())} ± {fmt(a.std(ddof=1)).lstrip('+')}" if len(a) > 1 else fmt(a[0])


def interval(ci: list[float] | None) -> str:
    return "n/a" if not ci or ci[0] is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def row(label: str, backtests: list, ratios: list[float]) -> str:
    """One table row: a single model's figures, or mean ± std over seed members."""
    m = [r.metrics for r in backtests]
    if len(backtests) == 1:
        (one,) = m
        figures = [pct(one["total_return"]), num(one["sharpe"]), interval(one.get("sharpe_ci")),
                   num(one.get("probabilistic_sharpe")), pct(one["max_drawdown"]), num(one["turnover"], 1),
                   num(ratios[0], 3)]
    else:
        lows = [x.get("sharpe_ci", [None])[0] for x in m]
        highs = [x.get("sharpe_ci", [None, None])[1] for x in m]
        mean_ci = None if None in lows + highs else [float(np.mean(lows)), float(np.mean(highs))]
        figures = [spread([x["total_return"] for x in m], pct), spread([x["sharpe"] for x in m], num),
                   "mean " + interval(mean_ci), spread([x.get("probabilistic_sharpe") for x in m], num),
                   spread([x["max_drawdown"] for x in m], pct), spread([x["turnover"] for x in m],
                                                                       lambda v: num(v, 1)),
                   spread(ratios, lambda v: num(v, 3))]
    return f"| {label} | " + " | ".join(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", default=["sse", "spx", "aapl"])
    parser.add_argument("--test", nargs="+", default=["goog", "spdb"])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--strategy-epochs", type=int, default=10)
    parser.add_argument("--cost-bps", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="train each stage this many times; report the "
                                                              "spread over seeds and the seed ensemble")
    parser.add_argument("--max-steps", type=int, help="cap both stages (a quick smoke run)")
    parser.add_argument("--db", type=Path, help="run-history file (default: a temporary one)")
    parser.add_argument("--price-run", help="reuse this finished price run (in --db) for stage 1")
    parser.add_argument("--train-end", default="2008-12-31", help="last day a training target may reach")
    parser.add_argument("--val-end", default="2010-12-31", help="last day a validation target may reach")
    args = parser.parse_args()

    store = RunStore(args.db or Path(tempfile.mkdtemp()) / "runs.db")
    if args.price_run:
        price_run, price_members = args.price_run, [args.price_run]
    else:
        price_run, price_members = trained(lambda seed: train_price(
            args.train, model_cfg=override(PRESETS[args.preset]), store=store,
            data_cfg=DataConfig(train_end=args.train_end, val_end=args.val_end),
            train_cfg=TrainConfig(epochs=args.epochs, seed=seed, max_steps=args.max_steps)),
            args.seed, args.seeds, store)
    strategy_run, strategy_members = trained(lambda seed: train_strategy(
        price_run, [], model_cfg=StrategyModelConfig(),  # stage 1's instruments and cut dates
        loss_cfg=StrategyLossConfig(cost_bps=args.cost_bps), data_cfg=DataConfig(), store=store,
        train_cfg=TrainConfig(epochs=args.strategy_epochs, seed=seed, lr=1e-3, max_steps=args.max_steps)),
        args.seed, args.seeds, store)

    cuts = store.get_run(price_run)["config"]["data"]
    print(f"price run {price_run}, strategy run {strategy_run}"
          + (f" (seed ensembles of {args.seeds}: seeds {args.seed}..{args.seed + args.seeds - 1})"
             if args.seeds > 1 else "")
          + f"; costs {args.cost_bps:g} bps; train to {cuts['train_end']}, validate to {cuts['val_end']}, "
          f"test from {cuts['test_start']}\n")
    print("| series | seen in training | period | model | strategy total | Sharpe | Sharpe 95 % CI | PSR (vs 0) "
          "| max DD | turnover/yr | 1-day MAE ratio | buy & hold total | Sharpe | follow-forecast total |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    skipped = []
    for data in [*args.train, *args.test]:
        cfg = BacktestConfig(cost_bps=args.cost_bps)
        try:
            ensemble = run_to_end(backtest_job(strategy_run, data, cfg=cfg, store=store)).result
        except ValueError as exc:  # no out-of-sample days: named below, never scored in-sample
            skipped.append(f"{data}: {exc}")
            continue
        frame, base = ensemble.frame, ensemble.baselines
        start = f"{frame.index[0]:%Y-%m-%d}"
        lead = (f"| {data} | {'yes (its test period)' if data in args.train else 'no'} "
                f"| {start} .. {frame.index[-1]:%Y-%m-%d} ")
        tail = (f" | {pct(base['buy_and_hold']['total_return'])} | {num(base['buy_and_hold']['sharpe'])} "
                f"| {pct(base['follow_forecast']['total_return'])} |")
        if args.seeds > 1:
            members = [run_to_end(backtest_job(run, data, cfg=cfg, store=store)).result for run in strategy_members]
            ratios = [mae_ratio(store, run, data, start) for run in price_members]
            print(lead + row(f"{args.seeds} seeds: mean ± std", members, ratios) + tail)
        print(lead + row("ensemble" if args.seeds > 1 else "model", [ensemble],
                         [mae_ratio(store, price_run, data, start)]) + tail)
    for line in skipped:
        print(f"\nno out-of-sample days, not scored: {line}")


if __name__ == "__main__":
    main()
