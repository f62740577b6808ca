"""`evaluate`: the forecast's quality on the test period, per instrument and horizon, in return units."""

from __future__ import annotations

import argparse
import math

from engine.cli.core import BadInput, Output, ProgressBar, command, iso_date, open_store
from engine.device import DEVICE_HELP

SHORT = {"climatology": "clim", "ewma": "EWMA", "garch": "GARCH"}
HEADER = f"  {'h':>2} {'days':>6} {'MAE ratio':>9} {'IC':>7} {'rank IC':>7} {'hit rate':>8} {'up rate':>7}"


def _configure(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="RUN", help="a price or strategy run id (its price network)")
    which.add_argument("--checkpoint", metavar="FILE", help="a checkpoint file (never executed)")
    parser.add_argument("--data", action="append", metavar="D",
                        help="sample name or file path; repeat for several instruments "
                             "(default: the datasets the run was trained on)")
    parser.add_argument("--start", type=iso_date, metavar="YYYY-MM-DD",
                        help="first forecast day (default: the model's test period; all of an unseen series "
                             "for runs without cut dates)")
    parser.add_argument("--end", type=iso_date, metavar="YYYY-MM-DD", help="last forecast day")
    parser.add_argument("--device", default="cpu", help=f"{DEVICE_HELP} (default %(default)s)")


def _num(value: float | None, fmt: str, width: int) -> str:
    """value in `fmt` right-aligned in `width` columns; n/a for an undefined figure (NaN / null)."""
    return f"{'n/a' if value is None or not math.isfinite(value) else format(value, fmt):>{width}}"


def horizon_lines(rows: list[dict]) -> list[str]:
    """One line per horizon under HEADER (ratios as fractions, rates as percentages)."""
    return [f"  {r['h']:>2} {r['days']:>6} {_num(r['mae_ratio'], '.3f', 9)} {_num(r['ic'], '+.3f', 7)} "
            f"{_num(r['rank_ic'], '+.3f', 7)} {_num(r['hit_rate'], '.1%', 8)} {_num(r['up_rate'], '.1%', 7)}"
            for r in rows]


def distribution_lines(report: dict) -> list[str]:
    """The model's pinball skill and band coverage (when it forecasts quantiles), then the volatility
    baselines' own figures against climatology, as in the published reference tables."""
    lines = []
    rows = report["horizons"]
    if rows and rows[0].get("pinball_skill"):
        lines += ["  model: pinball skill vs climatology / EWMA / GARCH-t; coverage of the 50/80/90 % bands",
                  *[f"  {r['h']:>2} " + " ".join(_num(r["pinball_skill"][k], '+.3f', 7)
                                                for k in ("climatology", "ewma", "garch"))
                    + "   " + " ".join(_num(r["coverage"][b], '.1%', 6) for b in ("0.5", "0.8", "0.9"))
                    for r in rows]]
    baselines = report.get("baselines") or {}
    if baselines:
        names = [k for k in ("ewma", "garch") if k in baselines]
        lines += ["  baselines: pinball skill vs climatology; 80 % band coverage",
                  f"  {'h':>2} " + " ".join(f"{SHORT[k] + ' skill':>11}" for k in names)
                  + " " + " ".join(f"{SHORT[k] + ' cov80':>11}" for k in ["climatology", *names])]
        for i, r in enumerate(baselines["climatology"]["horizons"]):
            skill = " ".join(_num(baselines[k]["horizons"][i]["pinball_skill"]["climatology"], '+.3f', 11)
                             for k in names)
            cover = " ".join(_num(baselines[k]["horizons"][i]["coverage"]["0.8"], '.1%', 11)
                             for k in ["climatology", *names])
            lines.append(f"  {r['h']:>2} {skill} {cover}")
    return lines


def report_text(data: dict) -> str:
    who = f"run {data['run_id']}" if data["run_id"] else "checkpoint"
    lines = [f"forecast quality of {who} (sha256 {data['checkpoint_sha256'][:12]}), h-day log returns; "
             "MAE ratio < 1 beats the zero-return forecast"]
    for name, report in data["instruments"].items():
        first, last = report["period"]
        where = "IN-SAMPLE (overlaps training)" if report["in_sample"] else "out of sample"
        lines += ["", f"{name} ({report['dataset']}): {first} .. {last}, {where}", HEADER,
                  *horizon_lines(report["horizons"]), *distribution_lines(report)]
    if len(data["instruments"]) > 1:
        lines += ["", f"pooled: per-instrument averages of {len(data['instruments'])} instruments", HEADER,
                  *horizon_lines(data["pooled"]["horizons"])]
    if data["cross_section"]:
        lines += ["", "cross-section (per day across instruments, then averaged):",
                  f"  {'h':>2} {'days':>6} {'IC':>7} {'rank IC':>7} {'ICIR':>7} {'top-bottom':>10}"]
        lines += [f"  {r['h']:>2} {r['days']:>6} {_num(r['ic'], '+.3f', 7)} {_num(r['rank_ic'], '+.3f', 7)} "
                  f"{_num(r['icir'], '+.3f', 7)} {_num(r['top_minus_bottom'], '+.4f', 10)}"
                  for r in data["cross_section"]["horizons"]]
    return "\n".join(lines)


@command("evaluate", "forecast quality on the test period, per instrument and horizon", _configure)
def run_evaluate(args: argparse.Namespace) -> Output:
    from engine.cli.train import cancel_on_sigint
    from engine.events import Progress, run_to_end
    from engine.jobs.evaluate import evaluate_job

    store = open_store(args)
    bar: ProgressBar | None = None

    def progress(event: object) -> None:
        nonlocal bar
        if isinstance(event, Progress) and event.total > 1:
            bar = bar or ProgressBar(event.total, "evaluate")
            bar.update(event.done, event.message)

    with cancel_on_sigint() as token:
        job = evaluate_job(args.checkpoint or args.run, args.data, store=store, start=args.start,
                           end=args.end, device=args.device, cancel=token)
        try:
            report = run_to_end(job, progress)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        finally:
            if bar is not None:
                bar.close()
    if report.status != "finished":
        return Output({"status": report.status}, f"evaluation {report.status}", 130)
    data = report.to_json()
    return Output(data, report_text(data))
