"""Plain event objects a long job yields, so the CLI, the GUI and tests follow the same run.

No Qt here: the workstation wraps a generator of these in a QThread and re-emits them as signals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

R = TypeVar("R")


class CancelToken:
    """Set from any thread; a job checks it between steps and stops cleanly."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class RunStarted:
    run_id: str
    kind: str  # "price" | "strategy" | "backtest"
    total_steps: int
    config: dict[str, Any] = field(default_factory=dict)
    resumed_from_step: int = 0


@dataclass
class StepEvent:
    step: int
    epoch: int
    loss: float
    grad_norm: float
    lr: float
    samples_per_s: float
    module_grad_norms: dict[str, float] = field(default_factory=dict)
    extras: dict[str, float] = field(default_factory=dict)  # e.g. loss parts, temperature


@dataclass
class EvalEvent:
    step: int
    epoch: int
    val_loss: float
    metrics: dict[str, Any] = field(default_factory=dict)
    is_best: bool = False


@dataclass
class CheckpointEvent:
    step: int
    path: str
    is_best: bool
    sha256: str = ""


@dataclass
class Progress:
    """Coarse progress of a job that has no optimiser steps (feature caching, backtests)."""

    done: int
    total: int
    message: str = ""


@dataclass
class Finished:
    run_id: str
    status: str  # "finished" | "cancelled" | "failed"
    metrics: dict[str, Any] = field(default_factory=dict)
    best_checkpoint: str | None = None
    last_checkpoint: str | None = None
    error: str | None = None
    step: int = 0
    early_stopped: bool = False


Event = RunStarted | StepEvent | EvalEvent | CheckpointEvent | Progress | Finished


def run_to_end(job: Generator[Any, Any, R], on_event: Callable[[Any], None] | None = None) -> R:
    """Drive a job to its end and return what it returns (its result, as `yield from` would).

    Scripts and the CLI call this; on_event sees every event on the way (a progress bar). A job
    that ends cancelled or failed still returns its record: the caller decides what that means.
    """
    try:
        while True:
            event = next(job)
            if on_event is not None:
                on_event(event)
    except StopIteration as end:
        return end.value
