"""Every benchmark in one command: one table of side-by-side ratios (each measured in this run on
this machine), the raw figures as JSON in benchmarks/results/<timestamp>.json (git-ignored), and
the table as markdown in benchmarks/latest.md for the README.

Run: .venv/bin/python benchmarks/run_all.py [--skip ddp,memory] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks import (  # noqa: E402
    bench_backtest,
    bench_ddp,
    bench_explain,
    bench_memory,
    bench_strategy,
    bench_training,
    bench_universe,
    bench_windows,
)
from engine.atomic import atomic_write  # noqa: E402

Row = tuple[str, str, str, str]  # what, ratio or figure, target, verdict


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "gpu": gpu, "torch": torch.__version__,
            "python": platform.python_version(), "os": platform.platform(terse=True),
            "date": datetime.now().strftime("%Y-%m-%d %H:%M")}


def verdict(value: float, target: float | None) -> str:
    return "" if target is None else ("met" if value >= target else "MISSED")


def ratio_row(what: str, value: float, target: float | None = None, unit: str = "x") -> Row:
    return what, f"{value:.2f}{unit}", f">= {target:g}{unit}" if target else "", verdict(value, target)


def rows_windows(r: dict) -> list[Row]:
    return [ratio_row("window building vs row-by-row pandas", r["speedup"], 100)]


def rows_backtest(r: dict) -> list[Row]:
    if "backtesting_py_bars_per_s" not in r:
        return [("backtest bars/s vs backtesting.py", "n/a", "", r.get("backtesting_py", ""))]
    return [ratio_row("backtest bars/s (numpy, batched) vs backtesting.py",
                      r["numpy_bars_per_s"] / r["backtesting_py_bars_per_s"])]


def rows_training(r: dict) -> list[Row]:
    sps = r["samples_per_s"]
    rows = [ratio_row(f"price training {r['preset']}: MLA vs nn.TransformerEncoder (fp32)",
                      r["mla_vs_torch_encoder"], 0.8),
            ratio_row("price training: MLA vs MHA (fp32)", r["mla_vs_mha"]),
            ratio_row("price training: bf16 autocast vs fp32 (MLA)", r["bf16_vs_fp32_mla"]),
            ("price training MLA fp32 samples/s", f"{sps['mla/fp32']:.1f}", "", "")]
    compiled = r.get("compile", {})
    if "compile_vs_eager_mla" in r:
        rows.append(ratio_row(f"torch.compile vs eager (MLA; first call "
                              f"{compiled['compile_cold_s']:.0f} s, inductor cache may be warm)",
                              r["compile_vs_eager_mla"]))
    elif compiled:
        rows.append(("torch.compile vs eager", "skipped", "", compiled.get("compile_skipped", "")))
    return rows


def rows_strategy(r: dict) -> list[Row]:
    return [ratio_row("strategy loss: vectorised vs per-sample loop", r["loss"]["speedup"], 20),
            ratio_row("strategy step: cached features vs recomputing", r["step"]["speedup"], 10)]


def rows_explain(r: dict) -> list[Row]:
    seconds, worst = r["seconds"], r["worst_seconds"]
    return [(f"explain one day, tiny, CPU (attention + IG of the 7-day median; median of {len(r['days'])} days, "
             f"{r['nodes']} nodes)", f"{seconds:.2f} s", "< 1 s", "met" if seconds < 1 else "MISSED"),
            (f"explain, the slowest of those days ({r['worst_nodes']} nodes)", f"{worst:.2f} s", "< 1 s",
             "met" if worst < 1 else "MISSED")]


def rows_ddp(r: dict) -> list[Row]:
    if "speedup_2_vs_1" not in r:
        return [("DDP 2 gloo processes vs 1", "failed", "", str(r["processes"]))]
    return [ratio_row("DDP: 2 gloo processes vs 1 (samples/s)", r["speedup_2_vs_1"])]


def rows_memory(r: dict) -> list[Row]:
    rows = []
    for p in r["presets"]:
        what = f"peak RSS, one step, {p['preset']} (batch {p['batch']})"
        if "error" in p:
            rows.append((what, "failed", "", p["error"]))
            continue
        cuda = f" (CUDA {p['cuda_max_allocated_gb']:.2f} GB)" if "cuda_max_allocated_gb" in p else ""
        target = "< 2 GB" if p["preset"] == "tiny" else ""
        met = ("met" if p["peak_rss_gb"] < 2 else "MISSED") if target else ""
        rows.append((what, f"{p['peak_rss_gb']:.2f} GB{cuda}", target, met))
    return rows


def rows_universe(r: dict) -> list[Row]:
    size = f"{r['instruments']:,} instruments x {r['days']:,} days"
    if "error" in r:
        return [(f"universe, {size}", "failed", "", r["error"])]
    return [(f"universe window index (windows, pool, calendar split), {size}",
             f"{r['index_s']:.1f} s ({r['index_cpu_s']:.1f} s CPU)", "< 10 s",
             "met" if r["index_met"] else "MISSED"),
            (f"peak RSS, universe + {r['steps']} tiny steps (batch {r['batch']})", f"{r['peak_rss_gb']:.2f} GB",
             "< 4 GB", "met" if r["rss_met"] else "MISSED"),
            (f"latest-window inference, every instrument (batches of {r['infer_batch']}, {r['device']})",
             f"{r['infer_per_s']:,.0f} instruments/s", "", "")]


BENCHMARKS: dict[str, tuple[Callable[[list[str]], dict], Callable[[dict], list[Row]]]] = {
    "windows": (lambda _: bench_windows.main(), rows_windows),
    "backtest": (bench_backtest.main, rows_backtest),
    "training": (bench_training.main, rows_training),
    "strategy": (bench_strategy.main, rows_strategy),
    "explain": (lambda _: bench_explain.main([]), rows_explain),
    "ddp": (bench_ddp.main, rows_ddp),
    "memory": (bench_memory.main, rows_memory),
    "universe": (bench_universe.main, rows_universe),
}


NOTES = (
    "- Price training: random windows of the preset's shape, one full step (forward, backward, "
    "AdamW), configurations timed in interleaved rounds, median step.",
    "- DDP: the real trainer under torchrun, one thread per process, same global batch.",
    "- Memory: one fp32 step in a fresh process; base and large at batch 2 and 1 (slow on a CPU).",
    "- Universe: synthetic close-only instruments, bars built in memory, all in one fresh process "
    "(benchmarks/bench_universe.py); inference is a CPU figure where no GPU is present.",
)


def markdown(rows: list[Row], info: dict[str, str], seconds: float) -> str:
    lines = [
        f"Benchmarks on {info['cpu']}, {info['cores']} cores, GPU {info['gpu']}; torch {info['torch']}, "
        f"Python {info['python']}, {info['os']}; {info['date']}, {seconds / 60:.1f} min in all.",
        "Each ratio is measured side by side in one run. The machine is shared with other "
        "engineers' tests, so figures are noisy (ratios less so than absolute rates).", "",
        "| benchmark | result | target | |", "|---|---|---|---|",
    ]
    lines += [f"| {what} | {value} | {target} | {met} |" for what, value, target, met in rows]
    lines += ["", *NOTES]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", default="", help=f"comma-separated, of {', '.join(BENCHMARKS)}")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args(argv)
    skip = {s for s in args.skip.split(",") if s}
    started, results, rows = time.perf_counter(), {}, []
    for name, (run, to_rows) in BENCHMARKS.items():
        if name in skip:
            continue
        print(f"\n== {name} ==", flush=True)
        t0 = time.perf_counter()
        try:
            results[name] = run(["--no-compile"] if name == "training" and args.no_compile else [])
            rows += to_rows(results[name])
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            rows.append((name, "failed", "", results[name]["error"][:200]))
        results[name]["seconds"] = time.perf_counter() - t0
    seconds = time.perf_counter() - started
    info = machine()
    table = markdown(rows, info, seconds)
    print("\n" + table)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    with atomic_write(HERE / "results" / f"{stamp}.json", "w") as f:
        json.dump({"machine": info, "seconds": seconds, "results": results}, f, indent=1, default=str)
    with atomic_write(HERE / "latest.md", "w") as f:
        f.write(table)
    return results


if __name__ == "__main__":
    main()
