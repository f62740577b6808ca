"""DDP on this CPU: the price trainer under torchrun with 2 gloo processes vs 1, same global batch.

Each process gets one intra-op thread (OMP_NUM_THREADS=1), so 2 processes use 2 cores; the figure
is the real trainer's samples/s (all ranks together) from its StepEvents, median after warm-up.
A small model keeps it short; on 2 shared cores expect well under 2x (gradient all-reduce and
the per-step agreement on cancellation are not free, and other work competes for the cores).

Run: .venv/bin/python benchmarks/bench_ddp.py [--steps 12] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WARMUP_STEPS = 3


def worker(steps: int, batch: int, db: str) -> None:
    """One rank of the torchrun job; rank 0 prints the run's samples/s as JSON."""
    from engine.config import DataConfig, PriceModelConfig, TrainConfig, override
    from engine.events import Finished, StepEvent
    from engine.store import RunStore
    from engine.training.distributed import world
    from engine.training.price import train_price

    model = override(PriceModelConfig(), d_model=64, n_layers=2, n_heads=2, kv_lora_rank=32,
                     qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16, ffn_hidden=160)
    train = TrainConfig(epochs=1, max_steps=steps, batch_size=batch, eval_every=10**6,
                        precision="fp32", device="cpu", warmup_steps=1)
    events = list(train_price(["sse"], model_cfg=model, data_cfg=DataConfig(start="2015-01-01"),
                              train_cfg=train, store=RunStore(db)))
    rates = [e.samples_per_s for e in events if isinstance(e, StepEvent) and e.step > WARMUP_STEPS]
    done = events[-1]
    if world().is_main:
        print(json.dumps({"samples_per_s": statistics.median(rates),
                          "status": done.status if isinstance(done, Finished) else "?"}))


def launch(processes: int, steps: int, batch: int, timeout_s: float) -> dict:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
               "QUANT_WORKSTATION_HOME": home}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", __file__, "--worker", "--steps", str(steps),
               "--batch", str(batch), "--db", str(Path(home) / "runs.db")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"over {timeout_s:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=32, help="global batch")
    parser.add_argument("--timeout", type=float, default=150.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.steps, args.batch, args.db)
        return {}
    runs = {n: launch(n, args.steps, args.batch, args.timeout) for n in (1, 2)}
    result = {"global_batch": args.batch, "steps": args.steps,
              "processes": {str(n): r for n, r in runs.items()}}
    if all("samples_per_s" in r for r in runs.values()):
        result["speedup_2_vs_1"] = runs[2]["samples_per_s"] / runs[1]["samples_per_s"]
    for n, r in runs.items():
        print(f"{n} process(es): " + (f"{r['samples_per_s']:.0f} samples/s" if "samples_per_s" in r
                                      else f"error {r['error']}"))
    if "speedup_2_vs_1" in result:
        print(f"2 vs 1: {result['speedup_2_vs_1']:.2f}x")
    return result


if __name__ == "__main__":
    main()
