"""A universe at scale (issue 14 item 5): N synthetic close-only instruments x T days build their window index
in under 10 s, a few tiny training steps on it peak under 4 GB RSS, and the latest window of every instrument
is forecast in batches on the device (the daily use).

Everything runs in one fresh subprocess so its peak RSS is the run's own (bench_memory measures the same way):
1. bars: a [T, N] matrix of GARCH-free random-walk closes made in one draw, each instrument listed from its own
   start day (a universe grows), cut into BarTables as the wide-table importer leaves them (close only, the
   other columns missing), no CSV importer;
2. the window index: windows per instrument, the pool and the calendar split at shared cut dates, exactly as
   a price run prepares them (engine.training.price: price_windows, price_cut_dates, pooled_calendar_split);
3. tiny training: the run's PriceStage batches (random train windows across the universe), --steps AdamW steps;
   the validation pass is not run (over millions of windows it takes hours on a CPU; it is batched, and its
   outputs, not its inputs, grow with the universe);
4. inference: engine.forecast.latest_forecasts on every instrument's last bar, batched on the device.

Run: .venv/bin/python benchmarks/bench_universe.py [--instruments 5000] [--days 6000] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_memory import peak_rss_gb
from engine.config import DataConfig, TrainConfig
from engine.data import BarTable
from engine.data.io import COLUMNS
from engine.data.splits import pooled_calendar_split
from engine.device import release_host_memory
from engine.forecast import LoadedPriceModel, latest_forecasts
from engine.models import build_price_model
from engine.training.price import PriceData, PriceStage, price_cut_dates, price_windows

INDEX_LIMIT_S, RSS_LIMIT_GB = 10.0, 4.0
INFER_BATCH = 1024


def synthetic_tables(n: int, days: int, seed: int = 0) -> list[BarTable]:
    """n close-only instruments on one business-day calendar; instrument k listed from a random day in the
    first half (at least 400 days of history each). One vectorised draw; the loop only wraps the columns."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2000-01-03", periods=days, name="date")
    vol = rng.uniform(0.01, 0.03, n)
    closes = 20 * np.exp(np.cumsum(rng.standard_normal((days, n)) * vol, axis=0))
    starts = rng.integers(0, max(days // 2, 1), n)
    starts = np.minimum(starts, max(days - 400, 0))
    missing = [c for c in COLUMNS if c != "close"]
    tables = []
    for k in range(n):
        frame = pd.DataFrame(np.nan, index=dates[starts[k]:], columns=list(COLUMNS))
        frame["close"] = closes[starts[k]:, k]
        tables.append(BarTable(frame=frame, present=["close"], derived=[], missing=missing, warnings=[],
                               source=f"synthetic:S{k}", instrument=f"S{k}", market="us",
                               fingerprint=f"synthetic-{seed}-{k}"))
    return tables


def child(n: int, days: int, steps: int, device: str) -> dict:
    t0 = time.perf_counter()
    tables = synthetic_tables(n, days)
    bars_s = time.perf_counter() - t0
    cfg = DataConfig()

    t0, c0 = time.perf_counter(), time.process_time()
    pooled = price_windows(tables, cfg)
    cuts = price_cut_dates(pooled, cfg)
    split = pooled_calendar_split(pooled, cuts, cfg.horizon)
    index_s, index_cpu_s = time.perf_counter() - t0, time.process_time() - c0  # CPU: what load does not inflate
    rss_index = peak_rss_gb()
    sources, fingerprints = [t.source for t in tables], [t.fingerprint for t in tables]
    del tables  # a run's bars go once windowed (prepare_price_data keeps only their fingerprints)
    release_host_memory()  # as prepare_price_data does then

    dev = torch.device(device)
    train = TrainConfig()
    t0 = time.perf_counter()
    prepared = PriceData(pooled, cuts, split, None, sources, fingerprints)
    model = build_price_model("tiny").to(dev).train()
    stage = PriceStage(prepared, train.loss, model.cfg.head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        batch = stage.batch(rng.integers(0, stage.train_size(), train.batch_size), dev)
        loss, _ = stage.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    train_s = time.perf_counter() - t0
    rss_train = peak_rss_gb()

    loaded = LoadedPriceModel(model.eval(), model.cfg, cfg, None, "", Path("bench"), {}, dev)
    latest_forecasts(loaded, pooled.sets[:8], batch=INFER_BATCH)  # warm-up (allocator, kernels)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    fc = latest_forecasts(loaded, pooled.sets, batch=INFER_BATCH)
    infer_s = time.perf_counter() - t0
    assert fc.prices.shape == (n, model.cfg.horizon) and np.isfinite(fc.prices).all()
    result = {"instruments": n, "days": days, "device": device, "bars_s": bars_s, "index_s": index_s,
              "index_cpu_s": index_cpu_s,
              "windows": int(sum(len(ws.ends) for ws in pooled.sets)),
              "train_windows": len(split.train), "val_windows": len(split.val), "test_windows": len(split.test),
              "peak_rss_gb_after_index": rss_index, "steps": steps, "batch": train.batch_size, "train_s": train_s,
              "peak_rss_gb": rss_train, "infer_s": infer_s, "infer_per_s": n / infer_s,
              "infer_batch": INFER_BATCH}
    if dev.type == "cuda":
        result["cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, default=5000)
    parser.add_argument("--days", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the whole child")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.instruments, args.days, args.steps, args.device)))
        return {}
    cmd = [sys.executable, __file__, "--child", "--instruments", str(args.instruments), "--days", str(args.days),
           "--steps", str(args.steps), "--device", args.device]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"instruments": args.instruments, "days": args.days, "error": f"over {args.timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
        return {"instruments": args.instruments, "days": args.days, "error": tail[:300]}
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["index_met"], r["rss_met"] = r["index_s"] < INDEX_LIMIT_S, r["peak_rss_gb"] < RSS_LIMIT_GB
    print(f"{r['instruments']:,} instruments x {r['days']:,} days ({r['windows']:,} windows; synthetic bars "
          f"{r['bars_s']:.1f} s): window index {r['index_s']:.2f} s, {r['index_cpu_s']:.2f} s CPU "
          f"(< {INDEX_LIMIT_S:g} s: "
          f"{'met' if r['index_met'] else 'MISSED'}), peak RSS after {r['steps']} tiny steps "
          f"{r['peak_rss_gb']:.2f} GB (< {RSS_LIMIT_GB:g} GB: {'met' if r['rss_met'] else 'MISSED'}), "
          f"latest-window inference {r['infer_per_s']:,.0f} instruments/s on {r['device']}")
    return r


if __name__ == "__main__":
    main()
