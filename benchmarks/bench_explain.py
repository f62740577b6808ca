"""How long explaining one day takes (issue 17: under 1 s for the tiny preset on the CPU): the whole
explain_job on the S&P 500 sample (bars imported, windowed, attention read out, integrated gradients of
the 7-day median until completeness is within 1 %, regime vote), median of a few runs.

The tiny network is freshly initialised (seeded): the cost does not depend on trained weights except
through the quadrature nodes completeness needs, which are reported.

Run: python benchmarks/bench_explain.py
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from engine.config import DataConfig
from engine.events import run_to_end
from engine.explain import explain_job
from engine.forecast import LoadedPriceModel
from engine.models import build_price_model

RUNS = 5


def tiny_model() -> LoadedPriceModel:
    torch.manual_seed(0)
    model = build_price_model("tiny").eval()
    return LoadedPriceModel(model, model.cfg, DataConfig(), np.full(model.cfg.horizon, 0.02), "", Path("tiny"), {},
                            torch.device("cpu"))


def main(sample: str = "spx", date: str = "2016-08-01") -> dict:
    loaded = tiny_model()
    run_to_end(explain_job(loaded, sample, date, 7))  # warm-up: first-call allocations
    seconds, parts = [], []
    for _ in range(RUNS):
        started = time.perf_counter()
        ex = run_to_end(explain_job(loaded, sample, date, 7))
        seconds.append(time.perf_counter() - started)
        parts.append(ex.timings)
    result = {"seconds": statistics.median(seconds), "runs": seconds, "nodes": ex.forecast.nodes,
              "completeness_gap": ex.forecast.completeness_gap,
              "parts": {k: statistics.median(p[k] for p in parts) for k in parts[0]},
              "threads": torch.get_num_threads()}
    print(result)
    return result


if __name__ == "__main__":
    main()
