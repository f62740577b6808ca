"""Data commands: `samples` and `inspect` (one instrument or a universe)."""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli.core import Output, ProgressBar, command, iso_date
from engine.config import HORIZON, WINDOW
from engine.data import ImportIssue, list_samples, load_bars
from engine.data.io import MARKETS, issue_line
from engine.data.samples import list_universes
from engine.data.universe import UniverseFilters, is_universe, split_member, universe_job
from engine.events import run_to_end

# ---------------------------------------------------------------- samples


@command("samples", "list the bundled datasets")
def run_samples(args: argparse.Namespace) -> Output:
    rows = [{"name": s.name, "instrument": s.instrument, "market": s.market, "rows": s.rows,
             "first": s.first, "last": s.last, "instruments": s.instruments}
            for s in list_samples() + list_universes()]
    text = "\n".join(f"{r['name']:<6} {r['rows']:>6} bars  {r['first']} .. {r['last']}  {r['instrument']}"
                     for r in rows)
    return Output({"samples": rows}, text)


# ---------------------------------------------------------------- inspect


def _configure_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="FILE_OR_SAMPLE",
                        help="a bundled sample name or a file path; a universe (a folder of files, a TDX vipdoc "
                             "root, a wide close table, us12) validates every instrument; UNIVERSE:CODE one")
    parser.add_argument("--no-adjust", dest="adjust", action="store_false",
                        help="keep OHLC as in the file (ignore Adj Close)")
    parser.add_argument("--min-rows", type=int, default=WINDOW + HORIZON + 1, metavar="N",
                        help="fewer bars is an error (default: one training window, %(default)s)")
    parser.add_argument("--market", choices=MARKETS, default=None,
                        help="where the instrument trades (sets the daily limit warnings check); "
                             "default: from a sample, an exchange code in the file or its name")
    parser.add_argument("--start", type=iso_date, metavar="YYYY-MM-DD", help="universe: bars from this day")
    parser.add_argument("--end", type=iso_date, metavar="YYYY-MM-DD", help="universe: bars up to this day")
    parser.add_argument("--prefix", action="append", default=[], metavar="CODE",
                        help="universe: only codes starting so (sh60, sz00, AA); may be repeated")


@command("inspect", "import and validate a file or sample; changes nothing", _configure_inspect)
def run_inspect(args: argparse.Namespace) -> Output:
    if split_member(args.source) is None and is_universe(args.source):
        return _inspect_universe(args)
    bars = load_bars(args.source, adjust=args.adjust, min_rows=args.min_rows, market=args.market)
    frame = bars.frame
    data = {
        "source": bars.source, "instrument": bars.instrument, "market": bars.market,
        "rows": len(frame), "first": f"{frame.index[0]:%Y-%m-%d}", "last": f"{frame.index[-1]:%Y-%m-%d}",
        "columns": {"present": bars.present, "derived": bars.derived, "missing": bars.missing},
        "adjusted": bars.adjusted,
        "warnings": [{"row": w.row, "column": w.column, "message": w.message, "date": w.date}
                     for w in bars.warnings],
        "last_close": float(frame["close"].iloc[-1]), "fingerprint": bars.fingerprint,
    }
    return Output(data, _inspect_text(data))


def _inspect_text(d: dict[str, Any]) -> str:
    cols = d["columns"]
    lines = [f"{d['source']}: {d['instrument']} (market {d['market']})",
             f"{d['rows']} bars {d['first']} .. {d['last']}, last close {d['last_close']:g}",
             "present: " + (", ".join(cols["present"]) or "-")]
    if cols["derived"]:
        lines.append("derived: " + ", ".join(cols["derived"]) + " (estimated as close x volume)")
    lines.append("missing: " + (", ".join(cols["missing"]) or "-"))
    if d["adjusted"]:
        lines.append("prices adjusted by Adj Close / Close (volume inversely)")
    lines.append(f"{len(d['warnings'])} warning(s)" + (":" if d["warnings"] else ""))
    lines += ["  " + issue_line(ImportIssue(**w)) for w in d["warnings"]]
    return "\n".join(lines)


def _inspect_universe(args: argparse.Namespace) -> Output:
    """Every instrument validated; one bad file is an error entry, the rest still import."""
    filters = UniverseFilters(min_rows=args.min_rows, start=args.start, end=args.end, prefixes=tuple(args.prefix))
    with ProgressBar(1, "importing") as bar:
        def show(event) -> None:
            bar.total = max(event.total, 1)
            bar.update(event.done, event.message)
        universe = run_to_end(universe_job(args.source, filters), show)
    data = universe.to_json()
    cov = data["coverage"]
    lines = [f"{data['source']}: a {data['kind']} universe of {cov['instruments']} instruments, "
             f"{cov['rows']:,} bars {cov['first']} .. {cov['last']} (all trading from {cov['all_from']}), "
             f"{cov['gaps']} gap(s) in {cov['with_gaps']} instrument(s)"]
    lines += [f"  {i['instrument']:<12} {i['rows']:>6} bars  {i['first']} .. {i['last']}  last close "
              f"{i['last_close']:g}" for i in data["instruments"]]
    if data["skipped"]:
        lines.append(f"{len(data['skipped'])} left out by the filters")
    lines.append(f"{len(data['errors'])} error(s)" + (":" if data["errors"] else ""))
    lines += [f"  {e['file']}: {e['message']}" for e in data["errors"]]
    return Output(data, "\n".join(lines))
