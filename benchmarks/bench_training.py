"""Price training throughput (samples/s) of one optimiser step, side by side on the same machine:
MLA vs plain MHA vs torch's nn.TransformerEncoder of equal shape, fp32 vs bf16 autocast, eager vs
torch.compile (cold compile time reported apart; skipped, with the reason, where it fails).

Issue 3 asks MLA tiny to reach >= 80 % of nn.TransformerEncoder's throughput; when it does not,
the top operators of one MLA step are profiled and printed so the cost can be named.

Configurations are timed in interleaved rounds (one step each, then the next configuration), and
the median step counts, so a noisy shared machine slows every configuration alike.

Run: .venv/bin/python benchmarks/bench_training.py [--preset tiny] [--batch 8] [--rounds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import PRESETS, PriceModelConfig
from engine.models import build_price_model

TARGET_MLA_VS_ENCODER = 0.8


class TorchEncoder(nn.Module):
    """nn.TransformerEncoder with the price network's shape, input embedding and pooled head."""

    def __init__(self, cfg: PriceModelConfig) -> None:
        super().__init__()
        self.embed = nn.Linear(cfg.n_features, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.ffn_hidden, cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(cfg.d_model, cfg.horizon)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = self.encoder(self.embed(x))
        return self.head(h[:, -1] + h.mean(dim=1))


def prices(out) -> Tensor:
    return out if isinstance(out, Tensor) else out.prices


def make_step(model: nn.Module, batch: int, cfg: PriceModelConfig, dtype: torch.dtype | None,
              compiled: bool = False) -> Callable[[], None]:
    """One full training step (forward, MSE, backward, AdamW) on fixed random windows."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.window, cfg.n_features, generator=gen)
    mask, y = torch.ones(batch, cfg.n_features), torch.randn(batch, cfg.horizon, generator=gen)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.mse_loss(prices(forward(x, mask)).float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(steps: dict[str, Callable[[], None]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per step of each configuration, measured in alternating rounds."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(timed(step))
    return {name: statistics.median(t) for name, t in times.items()}


def models(preset: str) -> dict[str, tuple[nn.Module, PriceModelConfig]]:
    cfg = PRESETS[preset]
    return {"mla": (build_price_model(cfg), cfg),
            "mha": (build_price_model(cfg, attention="mha"), cfg),
            "torch_encoder": (TorchEncoder(cfg), cfg)}


def profile_top_ops(step: Callable[[], None], top: int = 8) -> list[tuple[str, float]]:
    """(operator, share of self CPU time) of one step, most expensive first."""
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [(e.key, e.self_cpu_time_total / total) for e in events[:top]]


def compile_step(preset: str, batch: int, rounds: int) -> dict[str, float]:
    """First-step time (compile included) and the compiled step time of the MLA model, fp32.

    Inductor keeps compiled kernels in an on-disk cache, so after the first ever run the first step
    is a warm start (seconds); a truly cold compile takes minutes on a 2-core CPU."""
    model, cfg = models(preset)["mla"]
    step = make_step(model, batch, cfg, None, compiled=True)
    cold = timed(step)
    return {"compile_cold_s": cold, "compiled_step_s": interleaved({"c": step}, rounds, 0)["c"]}


def compile_check(preset: str, batch: int, rounds: int, timeout_s: float) -> dict[str, object]:
    """compile_step in a child process, so a missing compiler or a slow cold compile (minutes on a
    small CPU) is reported as skipped instead of sinking or stalling the other figures."""
    cmd = [sys.executable, __file__, "--preset", preset, "--batch", str(batch),
           "--rounds", str(rounds), "--compile-only"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"compile_skipped": f"cold compile did not finish within {timeout_s:.0f} s"}
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        return {"compile_skipped": f"torch.compile failed: {lines[-1][:200]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--compile-timeout", type=float, default=180.0)
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compile_only:
        print(json.dumps(compile_step(args.preset, args.batch, args.rounds)))
        return {}
    torch.manual_seed(0)
    built = models(args.preset)
    steps = {f"{name}/{label}": make_step(model, args.batch, cfg, dtype)
             for name, (model, cfg) in built.items()
             for label, dtype in (("fp32", None), ("bf16", torch.bfloat16))}
    seconds = interleaved(steps, args.rounds)
    result: dict[str, object] = {
        "preset": args.preset, "batch": args.batch, "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "parameters": {name: sum(p.numel() for p in m.parameters()) for name, (m, _) in built.items()},
        "samples_per_s": {k: args.batch / s for k, s in seconds.items()},
    }
    sps = result["samples_per_s"]
    ratio = sps["mla/fp32"] / sps["torch_encoder/fp32"]
    result.update(mla_vs_torch_encoder=ratio, mla_vs_mha=sps["mla/fp32"] / sps["mha/fp32"],
                  bf16_vs_fp32_mla=sps["mla/bf16"] / sps["mla/fp32"],
                  mla_target_met=ratio >= TARGET_MLA_VS_ENCODER)
    if ratio < TARGET_MLA_VS_ENCODER:
        model, cfg = built["mla"]
        result["mla_top_ops"] = profile_top_ops(make_step(model, args.batch, cfg, None))
    if not args.no_compile:
        result["compile"] = compile_check(args.preset, args.batch, max(2, args.rounds // 2),
                                          args.compile_timeout)
        if "compiled_step_s" in result["compile"]:
            result["compile_vs_eager_mla"] = seconds["mla/fp32"] / result["compile"]["compiled_step_s"]
    for name, value in sps.items():
        print(f"{name:>22}: {value:8.1f} samples/s")
    print(f"MLA / nn.TransformerEncoder (fp32): {ratio:.2f} (target >= {TARGET_MLA_VS_ENCODER})")
    for op, share in result.get("mla_top_ops", []):
        print(f"    {share:6.1%}  {op}")
    print(f"compile: {result.get('compile', 'not run')}")
    return result


if __name__ == "__main__":
    main()
