"""Resume a run: one engine call for the CLI, the History panel and the start-up prompt."""

from __future__ import annotations

from collections.abc import Generator

from engine.config import TrainConfig
from engine.events import CancelToken, Event, Finished
from engine.store import RunStore
from engine.training.price import run_price
from engine.training.recipe import recorded_recipe
from engine.training.strategy import run_strategy


def resume_run(store: RunStore, run_id: str, cancel: CancelToken | None = None,
               placement: TrainConfig | None = None) -> Generator[Event, None, Finished]:
    """Continue a price or strategy run from its last checkpoint with the recipe it was started
    with; returns its Finished record. placement: where it runs now (device, threads, compile),
    default where it ran before. ValueError (before anything changes) for an unknown run."""
    recipe = recorded_recipe(store, run_id)
    if placement is not None:
        recipe = recipe.with_runtime(placement)
    job = run_price if recipe.kind == "price" else run_strategy
    return (yield from job(recipe, store=store, resume=run_id, cancel=cancel))


__all__ = ["resume_run"]
