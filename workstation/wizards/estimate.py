"""How long a price run will take, before it starts: its windows and steps (the engine's own split
and step count), and seconds per optimiser step timed on a few steps of the real model."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from engine.config import DataConfig, PriceModelConfig, TrainConfig
from engine.data.io import BarTable
from engine.device import select_device
from engine.models import build_price_model
from engine.training.price import head_loss, price_split

TIMED_STEPS = 3  # after one warm-up step: enough to steady the figure, short enough to wait for


@dataclass(frozen=True)
class Plan:
    train: int  # windows
    val: int
    test: int
    steps_per_epoch: int
    total_steps: int


def plan(tables: list[BarTable], data: DataConfig, train: TrainConfig) -> Plan:
    """Windows per split and optimiser steps, counted as the trainer counts them (raises ValueError
    where the period is too short to split)."""
    split = price_split(tables, data)[1]
    per_epoch = max(1, len(split.train) // (train.batch_size * train.grad_accum))
    total = per_epoch * train.epochs
    return Plan(len(split.train), len(split.val), len(split.test), per_epoch,
                min(total, train.max_steps) if train.max_steps else total)


def step_seconds(model_cfg: PriceModelConfig, train: TrainConfig) -> float:
    """Seconds per optimiser step (forward, backward and AdamW over batch x accumulation windows of
    random inputs) on the chosen device and thread count; validation passes are not included."""
    device = select_device(train.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(train.num_threads or threads)
    try:
        model = build_price_model(model_cfg).to(device)
        optimiser = torch.optim.AdamW(model.parameters(), lr=train.lr)
        x = torch.randn(train.batch_size, model_cfg.window, model_cfg.n_features, device=device)  # (B, T, F)
        y = torch.randn(train.batch_size, model_cfg.horizon, device=device)

        def step() -> None:
            for _ in range(train.grad_accum):
                head_loss(model(x), y, model_cfg.head, train.loss).backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)

        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(TIMED_STEPS):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) / TIMED_STEPS
    finally:
        torch.set_num_threads(threads)


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"
