"""Result commands: `forecast`, `backtest`, `export-signals`."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.core import BadInput, Output, UsageError, command, iso_date, open_store
from engine.config import FILLS, BacktestConfig


def _model_options(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="RUN", help="a run id from the history (its best checkpoint)")
    which.add_argument("--checkpoint", metavar="FILE", help="a checkpoint file (never executed)")
    parser.add_argument("--data", required=True, action="append", metavar="D",
                        help="bundled sample name or file path (one instrument)")


def one_dataset(args: argparse.Namespace) -> str:
    """These commands score one instrument at a time: a repeated --data is refused, not dropped."""
    if len(args.data) > 1:
        raise UsageError(f"--data given {len(args.data)} times ({', '.join(args.data)}): "
                         f"{args.command} takes one instrument; run it once per instrument")
    return args.data[0]


# ---------------------------------------------------------------- forecast


def _configure_forecast(parser: argparse.ArgumentParser) -> None:
    _model_options(parser)
    parser.add_argument("--date", type=iso_date, metavar="YYYY-MM-DD",
                        help="forecast as of this day (default: last bar)")


@command("forecast", "the next 7 closes predicted by a price network", _configure_forecast)
def run_forecast(args: argparse.Namespace) -> Output:
    from engine.forecast import forecast, load_bars_as_trained, load_price_model

    store = open_store(args)
    try:
        loaded = load_price_model(args.checkpoint or args.run, store)
        bars = load_bars_as_trained(loaded, one_dataset(args))
        result = forecast(loaded, bars, args.date)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    low, high = result.quantiles.get("0.1"), result.quantiles.get("0.9")
    rows = "\n".join(f"  {d}  {p:,.4f}" + (f"   80 % band {low[h]:,.4f} .. {high[h]:,.4f}" if low and high else "")
                     for h, (d, p) in enumerate(zip(result.dates, result.prices)))
    excess = (" (excess over the universe's mean return: closes if the universe's mean return is zero)"
              if result.target == "excess" else "")
    return Output({"asof": result.asof, "dates": result.dates, "prices": result.prices,
                   "quantiles": result.quantiles, "returns": result.returns, "target": result.target,
                   "instrument": bars.instrument, "checkpoint_sha256": loaded.sha256},
                  f"{bars.instrument}: forecast as of {result.asof}{excess}\n{rows}")


# ---------------------------------------------------------------- backtest


def _configure_backtest(parser: argparse.ArgumentParser) -> None:
    _model_options(parser)
    defaults = BacktestConfig()
    parser.add_argument("--start", type=iso_date, metavar="YYYY-MM-DD",
                        help="first day (default: the model's test start, for any instrument; an "
                             "earlier day is allowed and marks the backtest in-sample)")
    parser.add_argument("--end", type=iso_date, metavar="YYYY-MM-DD")
    parser.add_argument("--cost-bps", type=float, default=defaults.cost_bps,
                        help="cost per unit of turnover, basis points (default %(default)s)")
    parser.add_argument("--slippage-bps", type=float, default=defaults.slippage_bps)
    parser.add_argument("--stamp-duty-bps", type=float, default=defaults.stamp_duty_bps,
                        help="tax on sales only, basis points (A-shares: 5; default %(default)s)")
    parser.add_argument("--fill", choices=FILLS, default=defaults.fill,
                        help="a close's decision trades at the next open or at that close "
                             "(data without opens fill at the close; default %(default)s)")
    parser.add_argument("--ashare-rules", action="store_true",
                        help="no buying at a limit-up close, no selling at a limit-down close, T+1")
    parser.add_argument("--risk-free", type=float, default=0.0, help="annual risk-free rate")
    parser.add_argument("--walk-forward", type=int, metavar="FOLDS",
                        help="retrain the run FOLDS times on expanding windows and trade each "
                             "following block out of sample (with --run)")
    parser.add_argument("--walk-forward-fraction", type=float, default=0.5, metavar="F",
                        help="share of the history the walk-forward blocks cover (default %(default)s)")


def _metric_line(name: str, m: dict) -> str:
    def pct(key: str) -> str:
        v = m.get(key)
        return "   n/a" if v is None else f"{v:6.1%}"

    def num(key: str) -> str:
        v = m.get(key)
        return "  n/a" if v is None else f"{v:5.2f}"

    return (f"  {name:<16} total {pct('total_return')}  CAGR {pct('cagr')}  Sharpe {num('sharpe')}  "
            f"maxDD {pct('max_drawdown')}  exposure {pct('exposure')}")


@command("backtest", "backtest a strategy (or follow-the-forecast) run with baselines",
         _configure_backtest)
def run_backtest_command(args: argparse.Namespace) -> Output:
    from engine.cli.train import TrainingProgress, cancel_on_sigint
    from engine.events import run_to_end
    from engine.jobs.backtest import backtest_job

    cfg = BacktestConfig(fill=args.fill, cost_bps=args.cost_bps, slippage_bps=args.slippage_bps,
                         stamp_duty_bps=args.stamp_duty_bps,
                         ashare_rules=args.ashare_rules, start=args.start, end=args.end,
                         risk_free=args.risk_free)
    store = open_store(args)
    model_ref, data = args.checkpoint or args.run, one_dataset(args)
    with cancel_on_sigint() as token:
        if args.walk_forward is not None:
            from engine.jobs.walkforward import walk_forward_job

            job = walk_forward_job(model_ref, data, folds=args.walk_forward, cfg=cfg, store=store,
                                   fraction=args.walk_forward_fraction, cancel=token)
        else:
            job = backtest_job(model_ref, data, cfg=cfg, store=store, cancel=token)
        try:
            with TrainingProgress("backtest") as progress:
                record = run_to_end(job, progress)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    if record.status != "finished":
        code = 130 if record.status == "cancelled" else 1
        return Output({"backtest_id": None, "status": record.status, "error": record.error},
                      f"backtest {record.status}: {record.error or ''}", code)
    result = record.result
    data = {"backtest_id": record.backtest_id, "run_id": record.run_id, "dataset": record.dataset,
            "start": record.config["start"], "end": record.config["end"],
            "in_sample": record.config["in_sample"],
            "period": [record.config["start"], record.config["end"]],
            "metrics": result.metrics, "baselines": result.baselines,
            "per_regime": result.per_regime, "walk_forward": record.config.get("walk_forward")}
    marked = " (IN-SAMPLE: starts before the model's test start)" if data["in_sample"] else ""
    lines = [f"backtest {record.backtest_id}: {record.dataset} {data['start']} .. {data['end']}{marked}",
             _metric_line("strategy", result.metrics)]
    lines += [_metric_line(name, m) for name, m in result.baselines.items()]
    return Output(data, "\n".join(lines))


# ---------------------------------------------------------------- export-signals


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backtest", required=True, metavar="ID")
    parser.add_argument("--out", required=True, type=Path, metavar="FILE.csv")


@command("export-signals", "write a backtest's daily signals to CSV (atomically)", _configure_export)
def run_export(args: argparse.Namespace) -> Output:
    from engine.jobs.backtest import export_backtest_signals

    store = open_store(args)
    record = store.get_backtest(args.backtest)
    try:
        if record is not None and record["config"].get("kind") == "portfolio":  # long format, one row per name
            from engine.jobs.portfolio import export_portfolio_backtest

            path, rows = export_portfolio_backtest(store, record, args.out)
        else:
            path, rows = export_backtest_signals(store, args.backtest, args.out)
    except (ValueError, OSError) as exc:
        raise BadInput(str(exc)) from None
    return Output({"path": str(path), "rows": rows}, f"wrote {rows} rows to {path}")
