"""Distribution forecasts against the volatility baselines on held-out US series (issue 13's reference table).

Run: .venv/bin/python benchmarks/bench_distribution.py [--start 2009-01-01] [--run RUN]
Per bundled US series, forecast days from --start (the calendar test split): pinball skill of EWMA
and GARCH(1,1)-t against climatology and their 80 % band coverage (h = 1 and 7), then a 10 bps
backtest of the 10 % volatility target beside buy and hold. With --run (a price run trained with
calendar cut dates, e.g. `train-price --data spx --data aapl --data goog --val-end 2008-12-31`),
the network's rows come from the evaluate job and appear once its forecasts carry quantiles.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.backtest import run_backtest
from engine.baselines import baseline_quantiles
from engine.config import HORIZON, BacktestConfig
from engine.data import load_bars
from engine.evaluation import BAND_LEVELS, coverage, pinball, pinball_skill

US = ("spx", "aapl", "goog")
REFERENCE = (0.1, 0.5, 0.9)  # the reference table's pinball levels
PICK = [BAND_LEVELS.index(q) for q in REFERENCE]


def baseline_rows(name: str, start: str) -> list[dict]:
    frame = load_bars(name).frame
    close, dates = frame["close"].to_numpy(), frame.index
    days = np.flatnonzero(dates >= pd.Timestamp(start))
    realised = np.full((len(days), HORIZON), np.nan)
    for h in range(1, HORIZON + 1):  # seven horizons
        ok = days + h < len(close)
        realised[ok, h - 1] = np.log(close[days[ok] + h] / close[days[ok]])
    q = baseline_quantiles(close, dates, days, BAND_LEVELS)
    both = np.where(np.isfinite(q["garch"]).all(-1) & np.isfinite(q["climatology"]).all(-1), realised, np.nan)
    ref = pinball(q["climatology"][..., PICK], both, REFERENCE)
    rows = []
    for model in ("ewma", "garch"):
        skill = pinball_skill(pinball(q[model][..., PICK], both, REFERENCE), ref)
        cover = coverage(q[model], both, BAND_LEVELS)["0.8"]
        rows.append({"series": name, "model": model, "skill_h1": skill[0], "skill_h7": skill[6],
                     "cov80_h1": cover[0], "cov80_h7": cover[6]})
    return rows


def vol_target_row(name: str, start: str) -> dict:
    frame = load_bars(name).frame
    close = frame["close"]
    days = close.index[close.index >= pd.Timestamp(start)]
    result = run_backtest(close, pd.Series(10, index=days), BacktestConfig(cost_bps=10), opens=frame["open"])
    held, target = result.baselines["buy_and_hold"], result.baselines["vol_target"]
    return {"series": name, "sharpe_vol_target": target["sharpe"], "sharpe_buy_and_hold": held["sharpe"],
            "sharpe_diff": target["sharpe"] - held["sharpe"],
            "max_dd_ratio": target["max_drawdown"] / held["max_drawdown"]}


def model_rows(run: str, start: str) -> list[dict]:
    from engine.events import run_to_end
    from engine.jobs.evaluate import evaluate_job
    from engine.store import RunStore

    report = run_to_end(evaluate_job(run, list(US), store=RunStore(), start=start))
    rows = []
    for name, inst in report.instruments.items():
        h1, h7 = inst["horizons"][0], inst["horizons"][-1]
        if h1.get("pinball_skill") is None:
            print(f"{name}: the run forecasts no quantiles (a point head): no model rows")
            continue
        rows += [{"series": name, "vs": k, "skill_h1": h1["pinball_skill"][k], "skill_h7": h7["pinball_skill"][k],
                  "cov80_h1": h1["coverage"]["0.8"], "cov80_h7": h7["coverage"]["0.8"]}
                 for k in ("climatology", "ewma", "garch")]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2009-01-01")
    parser.add_argument("--run", help="a price run to score beside the baselines")
    args = parser.parse_args()
    pd.set_option("display.float_format", "{:.3f}".format)
    print(f"Baselines from {args.start}: pinball skill vs climatology (10/50/90 % quantiles), 80 % coverage")
    print(pd.DataFrame([r for name in US for r in baseline_rows(name, args.start)]).to_string(index=False))
    print("\nVolatility target 10 % (EWMA) vs buy and hold, 10 bps, next-open fill")
    print(pd.DataFrame([vol_target_row(name, args.start) for name in US]).to_string(index=False))
    if args.run:
        rows = model_rows(args.run, args.start)
        if rows:
            print(f"\nModel {args.run}: pinball skill vs each baseline, 80 % coverage")
            print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
