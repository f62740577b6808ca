"""How long explaining one day takes (issue 17: under 1 s for the tiny preset on the CPU): the whole
explain_job on the S&P 500 sample (bars imported, windowed, attention read out, integrated gradients of
the 7-day median until completeness is within 1 %, regime vote) for several days of different markets.

The quadrature nodes that completeness needs depend on the network's weights and the day, so the
figure is per day (median of a few runs) with the worst day beside the median one. The network is a
freshly initialised (seeded) tiny one, or a trained price run with --run (and --db).

Run: python benchmarks/bench_explain.py [--run RUN --db FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from engine.config import DataConfig
from engine.events import run_to_end
from engine.explain import explain_job
from engine.forecast import LoadedPriceModel, load_price_model
from engine.models import build_price_model
from engine.store import RunStore

RUNS = 3
DAYS = ("2008-10-10", "2012-05-01", "2016-08-01", "2018-02-05", "2020-03-20")  # crash, calm, calm, shock, crash


def tiny_model() -> LoadedPriceModel:
    torch.manual_seed(0)
    model = build_price_model("tiny").eval()
    return LoadedPriceModel(model, model.cfg, DataConfig(), np.full(model.cfg.horizon, 0.02), "", Path("tiny"), {},
                            torch.device("cpu"))


def time_day(loaded: LoadedPriceModel, sample: str, date: str) -> dict:
    """Median seconds of RUNS explain_jobs of one day, with the nodes and gap of the last."""
    seconds = []
    for _ in range(RUNS):
        started = time.perf_counter()
        ex = run_to_end(explain_job(loaded, sample, date, 7))
        seconds.append(time.perf_counter() - started)
    return {"date": date, "seconds": statistics.median(seconds), "nodes": ex.forecast.nodes,
            "completeness_gap": ex.forecast.completeness_gap, "parts": ex.timings}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a trained price run (default: a seeded untrained tiny network)")
    parser.add_argument("--db", help="the run history holding --run (default: the app's)")
    parser.add_argument("--sample", default="spx")
    args = parser.parse_args(argv)
    loaded = load_price_model(args.run, RunStore(args.db) if args.db else RunStore()) if args.run else tiny_model()
    run_to_end(explain_job(loaded, args.sample, DAYS[0], 7))  # warm-up: first-call allocations
    days = [time_day(loaded, args.sample, date) for date in DAYS]
    ordered = sorted(days, key=lambda d: d["seconds"])
    result = {"seconds": ordered[len(ordered) // 2]["seconds"], "worst_seconds": ordered[-1]["seconds"],
              "nodes": ordered[len(ordered) // 2]["nodes"], "worst_nodes": max(d["nodes"] for d in days),
              "days": days, "model": args.run or "untrained tiny (seed 0)", "threads": torch.get_num_threads()}
    for d in days:
        print(f"{d['date']}: {d['seconds']:.2f} s, {d['nodes']} nodes, gap {d['completeness_gap']:.2%}")
    print({k: v for k, v in result.items() if k != "days"})
    return result


if __name__ == "__main__":
    main()
