"""Strategy stage speed, side by side: (1) the vectorised strategy loss vs a per-sample Python loop
reference of the same formula (target >= 20x; the two must agree to 1e-9), and (2) one strategy
training step on cached per-day price features vs the same step recomputing the Transformer
features of every (sequence, day) window (target >= 10x).

Run: .venv/bin/python benchmarks/bench_strategy.py [--batch 512] [--step-batch 8]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_training import timed
from engine.config import SEQ_LEN, StrategyLossConfig, StrategyModelConfig
from engine.data import build_windows, load_bars, sequence_starts
from engine.losses import strategy_loss
from engine.models import StrategyNetwork, build_price_model
from engine.regime import BEAR, BULL, hindsight_labels

LOSS_TARGET, STEP_TARGET = 20.0, 10.0


def reference_loss(positions: list[float], returns: list[float], regime: int,
                   cfg: StrategyLossConfig) -> float:
    """One sample's strategy loss day by day in plain Python, as a first implementation would."""
    s, cost = len(returns), cfg.cost_bps * 1e-4
    momentum = [10.0 if sum(returns[max(0, t - cfg.momentum_lookback):t]) > 0 else 0.0
                for t in range(s)]
    bench_pos = [10.0 if regime == BULL else cfg.bear_position if regime == BEAR else momentum[t]
                 for t in range(s)]

    def net(pos: list[float]) -> list[float]:
        w = [p / 10 for p in pos]
        return [w[t] * returns[t] - cost * abs(w[t] - (w[t - 1] if t else 0.0)) for t in range(s)]

    def std(x: list[float]) -> float:
        mean = sum(x) / len(x)
        return math.sqrt(sum((v - mean) ** 2 for v in x) / len(x) + 1e-8)

    strat, bench = net(positions), net(bench_pos)
    excess = sum(math.log1p(v) for v in strat) - sum(math.log1p(v) for v in bench)
    equity, peak, drawdown = 1.0, 1.0, 0.0
    for v in strat:
        equity *= 1 + v
        peak = max(peak, equity)
        drawdown = max(drawdown, 1 - equity / peak)
    churn = sum(abs(positions[t] - positions[t - 1]) for t in range(1, s)) / (s - 1) / 10
    risk = cfg.volatility_weight * std(strat) + cfg.drawdown_weight * drawdown + cfg.churn_weight * churn
    missed = sum(max(r, 0.0) * (1 - p / 10) for p, r in zip(positions, returns)) / s
    exposed = sum(max(-r, 0.0) * p / 10 for p, r in zip(positions, returns)) / s
    opportunity = missed if regime == BULL else exposed if regime == BEAR else 0.0
    daily = [a - b for a, b in zip(strat, bench)]
    ir = (sum(daily) / s) / std(daily)
    return (-cfg.return_weight * excess + cfg.risk_weight * risk
            + cfg.opportunity_weight * opportunity - cfg.information_ratio_weight * ir)


def loss_speed(batch: int, repeat: int = 50) -> dict:
    """Both on one thread (the loop cannot use more; a second intra-op thread on a busy 2-core
    machine stalls millisecond-long ops), best of many short repeats."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _loss_speed(batch, repeat)
    finally:
        torch.set_num_threads(threads)


def _loss_speed(batch: int, repeat: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    returns = torch.randn(batch, SEQ_LEN, generator=gen, dtype=torch.float64) * 0.015
    positions = torch.randint(0, 11, (batch, SEQ_LEN), generator=gen).double()
    regimes = hindsight_labels(returns)
    cfg = StrategyLossConfig(information_ratio_weight=0.1)  # every term of the objective
    vectorised = min(timed(lambda: strategy_loss(positions, returns, regimes, cfg)) for _ in range(repeat))
    p, r, g = positions.tolist(), returns.tolist(), regimes.tolist()
    loop_values: list[float] = []
    def loop_pass() -> None:
        loop_values[:] = [reference_loss(p[i], r[i], g[i], cfg) for i in range(batch)]

    loop = min(timed(loop_pass) for _ in range(3))
    value = float(strategy_loss(positions, returns, regimes, cfg)[0])
    return {"batch": batch, "vectorised_s": vectorised, "loop_s": loop, "speedup": loop / vectorised,
            "abs_diff": abs(value - sum(loop_values) / batch),
            "target_met": loop / vectorised >= LOSS_TARGET}


def step_speed(batch: int) -> dict:
    """A training step of the strategy network on real SSE sequences, two ways of getting features."""
    ws = build_windows(load_bars("sse"))
    starts = sequence_starts(ws.ends, SEQ_LEN)
    chosen = starts[np.random.default_rng(0).choice(len(starts), batch, replace=False)]
    days = chosen[:, None] + np.arange(SEQ_LEN)  # [batch, S] day indices
    price = build_price_model("tiny").eval()
    mask = torch.from_numpy(np.asarray(ws.mask, dtype=np.float32))

    @torch.no_grad()
    def encode(ends: np.ndarray) -> np.ndarray:
        out = price(torch.from_numpy(ws.inputs(ends)), mask.expand(len(ends), -1))
        return torch.cat([out.features, out.prices], dim=1).numpy()

    cache = np.zeros((len(ws.dates), price.cfg.d_model + price.cfg.horizon), np.float32)
    cache[ws.ends] = encode(ws.ends[-256:]).mean(axis=0)  # any values: only the gather is timed
    returns = torch.from_numpy(ws.next_returns(days)).float()
    regimes = hindsight_labels(returns)
    model = StrategyNetwork(StrategyModelConfig(feature_dim=cache.shape[1]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_cfg = StrategyLossConfig()

    def step(features: np.ndarray) -> None:
        out = model(torch.from_numpy(features).view(batch, SEQ_LEN, -1), tau=1.0)
        strategy_loss(out.positions, returns, regimes, loss_cfg)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    cached = min(timed(lambda: step(cache[days])) for _ in range(10))
    recompute = timed(lambda: step(encode(days.ravel())))  # seconds per step: one is enough
    return {"batch": batch, "seq_len": SEQ_LEN, "windows_per_step": int(days.size),
            "cached_step_s": cached, "recompute_step_s": recompute, "speedup": recompute / cached,
            "target_met": recompute / cached >= STEP_TARGET}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512, help="sequences in the loss comparison")
    parser.add_argument("--step-batch", type=int, default=16,
                        help="sequences per training step (the cached step is mostly per-day "
                             "overhead, so a tiny batch understates the gain)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    result = {"loss": loss_speed(args.batch), "step": step_speed(args.step_batch)}
    loss, step = result["loss"], result["step"]
    print(f"strategy loss, {loss['batch']} sequences: vectorised {loss['vectorised_s'] * 1e3:.2f} ms, "
          f"loop {loss['loop_s'] * 1e3:.0f} ms -> {loss['speedup']:.0f}x (target >= {LOSS_TARGET:.0f}x), "
          f"|difference| {loss['abs_diff']:.1e}")
    print(f"strategy step, {step['batch']}x{step['seq_len']}: cached {step['cached_step_s'] * 1e3:.1f} ms, "
          f"recomputing {step['windows_per_step']} windows {step['recompute_step_s']:.2f} s -> "
          f"{step['speedup']:.0f}x (target >= {STEP_TARGET:.0f}x)")
    return result


if __name__ == "__main__":
    main()
