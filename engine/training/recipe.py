"""What a training run was started with, as one object that can rebuild it (nanoGPT's config alone).

The run history records `RunRecipe.to_dict()` as a run's config; `from_record` reads it back, so a
resume, a walk-forward fold and the History panel all start from the same object. The JSON keys are
those the history has always held ("sources" for the datasets), so old records stay readable.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from engine.config import (
    DataConfig,
    PriceModelConfig,
    StrategyLossConfig,
    StrategyModelConfig,
    TrainConfig,
    from_dict,
    to_dict,
)
from engine.store import RunStore

TRAINING_KINDS = ("price", "strategy")
RUNTIME_FIELDS = ("device", "num_threads", "compile")  # may change on resume: same numbers


@dataclass
class RunRecipe:
    """Everything a price or strategy run was started with."""

    kind: str  # "price" | "strategy"
    datasets: list[str]  # sample names or file paths, as the user named them
    model: PriceModelConfig | StrategyModelConfig
    data: DataConfig
    train: TrainConfig
    loss: StrategyLossConfig | None = None  # strategy only
    price_run: str | None = None  # strategy only: the price run whose frozen features it reads ...
    price_checkpoint: str | None = None  # ... and that run's best checkpoint when this one started
    price_sha256: str | None = None

    @classmethod
    def from_record(cls, record: dict) -> RunRecipe:
        """The recipe of a run in the history; ValueError for a run that is not a training run."""
        kind, cfg = record["kind"], record["config"]
        if kind not in TRAINING_KINDS:
            raise ValueError(f"run {record['run_id']!r} is a {kind} run, not a price or strategy run")
        data, train = from_dict(DataConfig, cfg["data"]), from_dict(TrainConfig, cfg["train"])
        if kind == "price":
            return cls(kind, list(cfg["sources"]), from_dict(PriceModelConfig, cfg["model"]), data, train)
        return cls(kind, list(cfg["sources"]), from_dict(StrategyModelConfig, cfg["model"]), data, train,
                   from_dict(StrategyLossConfig, cfg["loss"]), cfg["price_run"],
                   cfg.get("price_checkpoint"), cfg.get("price_sha256"))

    def to_dict(self) -> dict[str, Any]:
        """The run's config as the history records it (plain JSON)."""
        out: dict[str, Any] = {"model": to_dict(self.model), "data": to_dict(self.data),
                               "train": to_dict(self.train), "sources": list(self.datasets)}
        if self.kind == "strategy":
            out.update(loss=to_dict(self.loss), price_run=self.price_run,
                       price_checkpoint=self.price_checkpoint, price_sha256=self.price_sha256)
        return out

    def checkpoint_configs(self) -> dict[str, dict]:
        """The configs every checkpoint carries: the loaders rebuild the model from them alone."""
        configs = {"model": to_dict(self.model), "data": to_dict(self.data), "train": to_dict(self.train)}
        if self.kind == "strategy":
            configs["loss"] = to_dict(self.loss)
            configs["price"] = {"run": self.price_run, "checkpoint": self.price_checkpoint,
                                "sha256": self.price_sha256}
        return configs

    def with_runtime(self, current: TrainConfig) -> RunRecipe:
        """The same run placed by `current` (device, threads, compile): the numbers do not change."""
        placed = {name: getattr(current, name) for name in RUNTIME_FIELDS}
        return replace(self, train=replace(self.train, **placed))


def recorded_recipe(store: RunStore, run_id: str, kind: str | None = None) -> RunRecipe:
    """The recipe of `run_id` in `store`; ValueError naming the history when there is none."""
    record = store.get_run(run_id)
    if record is None or (kind is not None and record["kind"] != kind):
        raise ValueError(f"no {kind or 'training'} run {run_id!r} in {store.path}")
    return RunRecipe.from_record(record)


__all__ = ["RUNTIME_FIELDS", "TRAINING_KINDS", "RunRecipe", "recorded_recipe"]
