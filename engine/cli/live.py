"""End of day: `update` (new bars in), `mark-live`, `signal` (tomorrow's orders), `ledger` (the paper
book against the backtest of the same days) and `rolling` (retrain every N days vs train once)."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli.core import BadInput, Output, command, iso_date, open_store
from engine.cli.portfolio import portfolio_configs, portfolio_options


def _update_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="D", help="the dataset held (sample, file or universe)")
    parser.add_argument("--from", dest="newer", required=True, metavar="FILE_OR_FOLDER",
                        help="the newer export (a file; a folder or universe for a universe)")
    parser.add_argument("--accept-revisions", action="store_true",
                        help="apply revised bars (recorded); by default they keep their old values and are listed")


@command("update", "append a newer export's bars to a dataset the workstation holds", _update_args)
def run_update(args: argparse.Namespace) -> Output:
    from engine.data.update import data_folder, training_periods, update_dataset

    store = open_store(args)
    try:
        report = update_dataset(args.data, args.newer, data_folder(store.path),
                                accept_revisions=args.accept_revisions, periods=training_periods(store, args.data))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    verb = "applied" if report.accepted else "kept old values, listed"
    lines = [f"{report.dataset}: {report.added} new bar(s) over {report.instruments} instrument(s) -> {report.held}",
             f"{len(report.revised)} revised value(s) ({verb})"]
    lines += [f"  {r.instrument} {r.date} {r.column}: {r.old} -> {r.new}" for r in report.revised[:20]]
    lines += [f"warning: {t['message']}" for t in report.trained_on]
    return Output(report.to_json(), "\n".join(lines))


def _mark_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN", help="a price or strategy run id")
    parser.add_argument("--data", required=True, metavar="D", help="the dataset it trades")
    parser.add_argument("--off", action="store_true", help="unmark it")
    parser.add_argument("--portfolio", action="store_true",
                        help="trade the universe as one portfolio of target weights (the options below, as "
                             "backtest-portfolio's); default: each instrument on its own positions 0..10")
    portfolio_options(parser)


@command("mark-live", "mark a run live on a dataset (its signals are issued and paper-traded)", _mark_args)
def run_mark_live(args: argparse.Namespace) -> Output:
    store = open_store(args)
    if store.get_run(args.run) is None:
        raise BadInput(f"no run {args.run!r} in {store.path}")
    config = None
    if args.portfolio and not args.off:
        from engine.portfolio.ledger import mark_config

        try:
            config = mark_config(args.data, *portfolio_configs(args))
        except ValueError as exc:
            raise BadInput(f"--portfolio: {exc}") from None
    store.mark_live(args.run, args.data, not args.off, config)
    live = store.live_models()
    text = [f"{m['run_id']} on {m['dataset']} (since {m['at']})"
            + (f", portfolio {m['config']['portfolio']['method']}" if m["config"] else "") for m in live]
    return Output({"live": live}, "\n".join(text) or "no live models")


def _signal_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", metavar="RUN", help="a price or strategy run (default: every live model)")
    parser.add_argument("--data", metavar="D", help="the dataset (default: the live marks')")
    parser.add_argument("--book", type=Path, metavar="FILE",
                        help="current book CSV: instrument,quantity (row 'cash') or instrument,position "
                             "(default: the paper ledger's last book)")
    parser.add_argument("--out", type=Path, metavar="FILE.csv", help="also write the orders CSV")


@command("signal", "tomorrow's targets and orders from the latest bar; appends the paper ledger", _signal_args)
def run_signal(args: argparse.Namespace) -> Output:
    from engine.events import run_to_end
    from engine.jobs.signal import read_book, signal_job, write_orders

    store = open_store(args)
    try:
        book = read_book(args.book) if args.book else None
        report = run_to_end(signal_job(store, run=args.run, data=args.data, book=book))
        if args.out:
            write_orders(report, args.out)
    except (ValueError, FileNotFoundError) as exc:
        raise BadInput(str(exc)) from None
    data = report.to_json()
    lines = [f"signals as of {report.asof} ({report.ledger_days} ledger day(s) recorded)"]
    lines += [f"  target {t['instrument']}: " + (f"position {t['position']}/10" if "position" in t else
                                                 f"weight {t['weight']:.2%}" + ("" if t["rebalance"] else " (held)"))
              + f" ({t['run_id']})" for t in report.targets]
    lines += [f"  {o.side} {o.size:g} {o.unit} {o.instrument} ref {o.reference_price:g} on {o.fill_day}"
              + (f"; {o.rule}" if o.rule else "") + (f"; BLOCKED: {o.blocked}" if o.blocked else "")
              for o in report.orders]
    return Output(data, "\n".join(lines + report.rules))


def _ledger_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", metavar="RUN", help="the live run (default: the latest ledger)")


@command("ledger", "the paper ledger against the backtest of the same days", _ledger_args)
def run_ledger(args: argparse.Namespace) -> Output:
    from engine.ledger import ledger_report

    store = open_store(args)
    try:
        data = ledger_report(store, args.run)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    text = (f"{data['ledger']}: {data['days']} day(s), paper equity {data['equity'][-1]:.4f}, backtest "
            f"{data['backtest_equity'][-1]:.4f}, max daily gap {data['max_daily_gap_bps']:.3f} bp\n"
            f"{'ALARM: ' if data['alarm']['alarm'] else ''}{data['alarm']['message']}")
    return Output(data, text)


def _rolling_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN", help="the price or strategy run to retrain")
    parser.add_argument("--data", required=True, metavar="D", help="sample name or file path")
    parser.add_argument("--every", type=int, required=True, metavar="N", help="retrain every N trading days")
    parser.add_argument("--start", type=iso_date, required=True, metavar="YYYY-MM-DD", help="forward period start")
    parser.add_argument("--end", type=iso_date, metavar="YYYY-MM-DD", help="forward period end (default: last bar)")


@command("rolling", "retrain on an expanding window every N days vs train once, on the same forward days",
         _rolling_args)
def run_rolling(args: argparse.Namespace) -> Output:
    from engine.events import run_to_end
    from engine.jobs.rolling import rolling_job

    try:
        report = run_to_end(rolling_job(args.run, args.data, every=args.every, start=args.start, end=args.end,
                                        store=open_store(args)))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    text = (f"{report.run_id}: {len(report.blocks)} retrain(s); rolling {report.rolling}; "
            f"train once {report.train_once}")
    return Output(report.to_json(), text, 0 if report.status == "finished" else 130)
