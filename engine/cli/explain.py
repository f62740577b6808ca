"""`explain`: why the forecast (and a strategy run's position) on one day: attention, attributions, regime."""

from __future__ import annotations

import argparse

from engine.cli.core import BadInput, Output, command, iso_date, open_store
from engine.config import HORIZON
from engine.device import DEVICE_HELP


def _configure(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="RUN", help="a price or strategy run id (its best checkpoint)")
    which.add_argument("--checkpoint", metavar="FILE", help="a checkpoint file (never executed)")
    parser.add_argument("--data", required=True, metavar="D", help="sample name or file path")
    parser.add_argument("--date", type=iso_date, metavar="YYYY-MM-DD",
                        help="the day to explain (the last trading day on or before it; default: the latest bar)")
    parser.add_argument("--horizon", type=int, default=HORIZON, metavar="H",
                        help="the forecast horizon whose median is attributed (default %(default)s)")
    parser.add_argument("--device", default="cpu", help=f"{DEVICE_HELP} (default %(default)s)")


def report_text(data: dict) -> str:
    lines = [f"{data['instrument']} on {data['asof']}: the {data['horizon']}-day median forecast is "
             f"{data['forecast_return']:+.2%} (log return)"
             + (f"; the strategy chose position {data['position']}/10" if data["position"] is not None else "")]
    lines += [f"  attribution baseline: {data['forecast']['baseline']}"]
    lines += [f"  - {text}" for text in data["top"]]
    if data["regime"]:
        lines += [f"regime: {data['regime']['label']} ({data['regime']['lookback']}-day vote)"]
        lines += [f"  {v['voter']:<9} {v['vote']:<8} {v['statistic']:+.5f} in [{v['low']:+.5f}, {v['high']:+.5f}]: "
                  f"{v['rule']}" for v in data["regime"]["voters"]]
    attention = data["attention"][-1]
    peak = max(range(len(attention)), key=attention.__getitem__)
    lines += [f"last layer's attention peaks on {data['dates'][peak]} ({attention[peak]:.1%})"]
    return "\n".join(lines)


@command("explain", "attention and attributions behind one day's forecast (and position)", _configure)
def run_explain(args: argparse.Namespace) -> Output:
    from engine.explain import explain_day

    try:
        result = explain_day(args.checkpoint or args.run, args.data, args.date, args.horizon,
                             open_store(args), args.device)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    data = result.to_json()
    return Output(data, report_text(data))
