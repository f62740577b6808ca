"""`backtest-portfolio`: a universe traded as a portfolio of a price run's forecasts."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from engine.cli.core import BadInput, Output, command, iso_date, open_store
from engine.config import FILLS, BacktestConfig

if TYPE_CHECKING:
    from engine.portfolio.construct import PortfolioConfig


def portfolio_options(parser: argparse.ArgumentParser) -> None:
    """How a universe becomes weights and what trading them costs: backtest-portfolio's and mark-live's."""
    from engine.portfolio.construct import METHODS, PortfolioConfig

    d, b = PortfolioConfig(), BacktestConfig()
    parser.add_argument("--method", choices=METHODS, default=d.method)
    parser.add_argument("--top-k", type=int, default=d.top_k)
    parser.add_argument("--rebalance", type=int, default=d.rebalance, metavar="N", help="days between decisions")
    parser.add_argument("--band", type=float, help="also rebalance when a weight drifts this far from its target")
    parser.add_argument("--max-weight", type=float, default=d.max_weight, metavar="W")
    parser.add_argument("--min-cash", type=float, default=d.min_cash)
    parser.add_argument("--max-turnover", type=float, help="sum |w - held| per decision (mean_variance)")
    parser.add_argument("--cost-bps", type=float, default=b.cost_bps)
    parser.add_argument("--slippage-bps", type=float, default=b.slippage_bps)
    parser.add_argument("--stamp-duty-bps", type=float, default=b.stamp_duty_bps)
    parser.add_argument("--fill", choices=FILLS, default=b.fill)
    parser.add_argument("--ashare-rules", action="store_true")


def portfolio_configs(args: argparse.Namespace) -> tuple[PortfolioConfig, BacktestConfig]:
    """portfolio_options' values as configs (a bad combination raises ValueError)."""
    from engine.portfolio.construct import PortfolioConfig

    cfg = BacktestConfig(fill=args.fill, cost_bps=args.cost_bps, slippage_bps=args.slippage_bps,
                         stamp_duty_bps=args.stamp_duty_bps, ashare_rules=args.ashare_rules,
                         start=getattr(args, "start", None), end=getattr(args, "end", None))
    return PortfolioConfig(method=args.method, top_k=args.top_k, rebalance=args.rebalance, band=args.band,
                           max_weight=args.max_weight, min_cash=args.min_cash, max_turnover=args.max_turnover), cfg


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN", help="a price (or strategy) run id")
    parser.add_argument("--data", required=True, metavar="UNIVERSE", help="a universe (us12, a folder, a vipdoc root)")
    portfolio_options(parser)
    parser.add_argument("--start", type=iso_date, metavar="YYYY-MM-DD")
    parser.add_argument("--end", type=iso_date, metavar="YYYY-MM-DD")
    parser.add_argument("--walk-forward", type=int, metavar="FOLDS",
                        help="retrain the price run on expanding folds and trade each fold's block with its own "
                             "model (--start/--end do not apply)")
    parser.add_argument("--walk-forward-fraction", type=float, default=0.5, metavar="F",
                        help="share of the history the walk-forward blocks cover (default %(default)s)")


@command("backtest-portfolio", "backtest a universe as a portfolio of a run's forecasts", _configure)
def run_backtest_portfolio(args: argparse.Namespace) -> Output:
    from engine.cli.train import TrainingProgress, cancel_on_sigint
    from engine.events import run_to_end
    from engine.jobs.portfolio import portfolio_job, portfolio_walk_forward_job
    store = open_store(args)
    with cancel_on_sigint() as token:
        try:
            pcfg, cfg = portfolio_configs(args)
            if args.walk_forward is not None:
                job = portfolio_walk_forward_job(args.run, args.data, folds=args.walk_forward, pcfg=pcfg, cfg=cfg,
                                                 store=store, fraction=args.walk_forward_fraction, cancel=token)
            else:
                job = portfolio_job(args.run, args.data, pcfg=pcfg, cfg=cfg, store=store, cancel=token)
            with TrainingProgress("backtest-portfolio") as progress:
                record = run_to_end(job, progress)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    if record.status != "finished":
        return Output({"backtest_id": None, "status": record.status}, f"portfolio backtest {record.status}",
                      130 if record.status == "cancelled" else 1)
    row = store.get_backtest(record.backtest_id)
    metrics, baselines = row["metrics"], row["baselines"]
    data = {"backtest_id": record.backtest_id, "run_id": record.run_id, "dataset": record.dataset,
            "period": list(record.period), "in_sample": record.config["in_sample"], "metrics": metrics,
            "baselines": baselines, "risk": metrics.get("risk"), "walk_forward": record.config.get("walk_forward")}
    lines = [f"portfolio backtest {record.backtest_id}: {record.dataset} {record.period[0]} .. {record.period[1]} "
             f"({pcfg.method}, fill {metrics['fill']})"]
    lines += [f"  {name:<14} total {m['total_return']:7.1%}  Sharpe {m['sharpe'] or float('nan'):5.2f}"
              for name, m in [("portfolio", metrics), *baselines.items()]]
    return Output(data, "\n".join(lines))
