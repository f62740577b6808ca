"""Peak memory of one price training step per preset (issue 7: tiny under 2 GB).

Each preset runs in a fresh subprocess so the peaks do not mix: the model, AdamW state, one
forward/backward/step at the given batch in fp32 (the largest footprint; bf16 autocast only
shrinks activations). Peak RSS from getrusage; on CUDA also torch.cuda.max_memory_allocated.
base and large take long on a small CPU, so they are measured at batch 2 and 1 by default.

Run: .venv/bin/python benchmarks/bench_memory.py [--presets tiny,small,base,large] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.models import build_price_model

BATCHES = {"tiny": 64, "small": 16, "base": 2, "large": 1}  # tiny at TrainConfig's default batch
TINY_LIMIT_GB = 2.0


def peak_rss_gb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def one_step(preset: str, batch: int, device: str) -> dict:
    """Build, then one optimiser step; runs inside the child process."""
    started = time.perf_counter()
    dev = torch.device(device)
    model = build_price_model(preset).to(dev).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda" or None)
    x = torch.randn(batch, model.cfg.window, model.cfg.n_features, device=dev)
    mask = torch.ones(batch, model.cfg.n_features, device=dev)
    y = torch.randn(batch, model.cfg.horizon, device=dev)
    torch.nn.functional.mse_loss(model(x, mask).prices, y).backward()
    optimizer.step()
    result = {"preset": preset, "batch": batch, "parameters": model.num_parameters(),
              "peak_rss_gb": peak_rss_gb(), "seconds": time.perf_counter() - started}
    if dev.type == "cuda":
        result["cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return result


def measure(preset: str, batch: int, device: str, timeout_s: float) -> dict:
    cmd = [sys.executable, __file__, "--child", preset, "--batch", str(batch), "--device", device]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"preset": preset, "batch": batch, "error": f"over {timeout_s:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1]
        return {"preset": preset, "batch": batch, "error": tail[:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small,base,large")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="one batch for every preset")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per preset")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(one_step(args.child, args.batch, args.device)))
        return {}
    rows = [measure(p, args.batch or BATCHES.get(p, 1), args.device, args.timeout)
            for p in args.presets.split(",")]
    for row in rows:
        cuda = f", CUDA {row['cuda_max_allocated_gb']:.2f} GB" if "cuda_max_allocated_gb" in row else ""
        print(f"{row['preset']:>6} batch {row['batch']:>3}: " + (
            f"error {row['error']}" if "error" in row else
            f"peak RSS {row['peak_rss_gb']:.2f} GB{cuda} ({row['parameters'] / 1e6:.1f}M parameters, "
            f"{row['seconds']:.0f} s)"))
    tiny = next((r for r in rows if r["preset"] == "tiny" and "peak_rss_gb" in r), None)
    return {"device": args.device, "presets": rows,
            "tiny_under_2gb": tiny is not None and tiny["peak_rss_gb"] < TINY_LIMIT_GB}


if __name__ == "__main__":
    main()
