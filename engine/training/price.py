"""Stage 1 job: train the price network on pooled instruments and record it in the run history.

Targets are the scale-free h-day log returns: with the "vol_scaled" feature set (new runs)
z = log(close_{e+h} / close_e) / (sigma_e sqrt h) with sigma the causal EWMA volatility at e; with "classic"
(old runs) log(close_{e+h} / close_e) divided by its per-horizon std on the TRAIN split only (that scale
travels in every checkpoint). The head (PriceModelConfig.head) learns their quantiles (pinball loss),
Student-t parameters (NLL) or a point value (TrainConfig.loss). Windows are gathered per batch.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from engine.config import FEATURE_SETS, HEADS, QUANTILES, TARGETS, DataConfig, PriceModelConfig, TrainConfig, n_features
from engine.data import (
    BarTable,
    CutDates,
    PooledWindows,
    Split,
    build_windows,
    calendar_cut_dates,
    load_bars,
    pooled_calendar_split,
    recorded_cut_dates,
    split_json,
)
from engine.data.context import market_context
from engine.device import release_host_memory
from engine.events import CancelToken, Event, Finished, Progress
from engine.losses import pinball_loss, price_loss, student_t_nll
from engine.models import PriceOutput, build_price_model, output_quantiles
from engine.store import RunStore
from engine.training.recipe import RunRecipe, recorded_recipe
from engine.training.trainer import RunEntry, TrainStage, fit, to_device

EVAL_BATCH = 256
COVERAGE_BANDS = {50: (0.25, 0.75), 80: (0.1, 0.9), 90: (0.05, 0.95)}  # central band: its two QUANTILES
BULK_DAYS = 1_000_000  # instrument-days of bars worth handing back to the OS once windowed (a universe);
# below it the full garbage collection that goes first would only hold the GIL: a pause the app shows


@dataclass
class PriceData:
    """Windows of every instrument, their calendar split, and (classic features) the train-only target scale."""

    pooled: PooledWindows
    cuts: CutDates  # one set of cut dates for every instrument, recorded with the run
    split: Split  # (set index, end day) pairs
    target_scale: np.ndarray | None  # [horizon] std of train targets; None: vol-scaled targets
    sources: list[str]
    fingerprints: list[str]

    def units(self, items: np.ndarray) -> np.ndarray:
        """[n, horizon] the log return of one network unit for each (set, end) item."""
        if self.target_scale is None:
            return self.pooled.units(items)
        return np.broadcast_to(self.target_scale, (len(items), len(self.target_scale)))


def price_windows(tables: list[BarTable], cfg: DataConfig) -> PooledWindows:
    """The tables cut to cfg's period and windowed (with cfg's market context beside each), pooled with
    cfg's target (own or excess h-day returns)."""
    if cfg.start is not None or cfg.end is not None:
        tables = [replace(t, frame=t.frame.loc[cfg.start:cfg.end]) for t in tables]
    context = market_context(cfg.context, tables, cfg.adjust)
    return PooledWindows([build_windows(t, cfg.window, cfg.horizon, cfg.feature_set, context) for t in tables],
                         target=cfg.target)


def price_cut_dates(pooled: PooledWindows, cfg: DataConfig) -> CutDates:
    """The run's cut dates: those it recorded (a resume reuses them, never recomputes), else the
    user's train_end / val_end with fractions of the pooled calendar for the rest."""
    return recorded_cut_dates(cfg) or calendar_cut_dates(
        pooled.sets, cfg.val_fraction, cfg.test_fraction, cfg.train_end, cfg.val_end,
        embargo=cfg.horizon)


def price_split(tables: list[BarTable], cfg: DataConfig) -> tuple[PooledWindows, Split]:
    """The split a price run trains on (every instrument cut at the same dates, embargo = horizon),
    and the one the train wizard previews."""
    pooled = price_windows(tables, cfg)
    return pooled, pooled_calendar_split(pooled, price_cut_dates(pooled, cfg), cfg.horizon)


def prepare_price_data(data: list[str], cfg: DataConfig) -> PriceData:
    """Load, window and split at shared cut dates; DataImportError / ValueError on bad input."""
    if not data:
        raise ValueError("no data: give at least one sample name or file")
    tables = [load_bars(src, adjust=cfg.adjust) for src in data]
    pooled = price_windows(tables, cfg)
    fingerprints = [t.fingerprint for t in tables]
    del tables  # the bars go once windowed: a universe's frames are the largest thing in memory until here
    if sum(len(ws.dates) for ws in pooled.sets) >= BULK_DAYS:
        release_host_memory()
    cuts = price_cut_dates(pooled, cfg)
    split = pooled_calendar_split(pooled, cuts, cfg.horizon)
    if not len(split.val):
        raise ValueError(f"no validation windows between train_end {cuts.train_end} and val_end "
                         f"{cuts.val_end}: move the cut dates or raise val_fraction")
    scale = None
    if cfg.feature_set == "classic":
        scale = np.maximum(np.nanstd(pooled.targets(split.train), axis=0), 1e-6)
    return PriceData(pooled, cuts, split, scale, list(data), fingerprints)


def price_metrics(pred: np.ndarray, true: np.ndarray, close: np.ndarray) -> dict[str, float]:
    """MAE in price units, 1-day direction accuracy, and skill vs "tomorrow = today" per horizon.

    pred, true: [n, horizon] log returns from close_e; close: [n].
    """
    pred_p, true_p = close[:, None] * np.exp(pred), close[:, None] * np.exp(true)
    mae_h = np.abs(pred_p - true_p).mean(axis=0)
    naive_h = np.abs(close[:, None] - true_p).mean(axis=0)
    moved = true_p[:, 0] != close  # a flat day (suspension) has no direction to get right
    hits = np.sign(pred_p[moved, 0] - close[moved]) == np.sign(true_p[moved, 0] - close[moved])
    metrics = {"mae": float(mae_h.mean()), "mae_naive": float(naive_h.mean()),
               "direction_accuracy": float(hits.mean()) if hits.size else float("nan")}
    skill = 1.0 - mae_h / np.maximum(naive_h, 1e-12)
    metrics.update({f"skill_h{h + 1}": float(s) for h, s in enumerate(skill)})
    return metrics


def interval_metrics(quantiles: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Pinball loss and 50/80/90 % central-band coverage of quantiles [n, horizon, len(QUANTILES)]
    against true [n, horizon], both in network units; empty for a point head (NaN quantiles)."""
    if np.isnan(quantiles).all():
        return {}
    pinball = pinball_loss(torch.from_numpy(quantiles), torch.from_numpy(true), QUANTILES)
    metrics = {"pinball": float(pinball)}
    for pct, (lo, hi) in COVERAGE_BANDS.items():
        inside = (quantiles[..., QUANTILES.index(lo)] <= true) & (true <= quantiles[..., QUANTILES.index(hi)])
        metrics[f"coverage_{pct}"] = float(inside.mean())
    return metrics


def head_loss(out: PriceOutput, target: Tensor, head: str, point_kind: str) -> Tensor:
    """The training loss of each head: pinball on the quantiles, Student-t NLL, or the point loss."""
    if head == "quantile":
        return pinball_loss(out.quantiles.float(), target, QUANTILES)
    if head == "student_t":
        p = out.t_params.float()
        return student_t_nll(p[..., 0], p[..., 1], p[..., 2], target)
    return price_loss(out.prices.float(), target, point_kind)


class PriceStage(TrainStage):
    kind = "price"

    def __init__(self, prepared: PriceData, loss_kind: str, head: str) -> None:
        self.data, self.loss_kind, self.head = prepared, loss_kind, head

    # The validation pass's arrays, [n_val, horizon] float64 twice and [n_val]: made when it first runs, so a
    # universe's millions of validation windows hold no memory while the training steps before it run.
    @cached_property
    def val_targets(self) -> np.ndarray:
        return self.data.pooled.fit_targets(self.data.split.val)

    @cached_property
    def val_units(self) -> np.ndarray:
        return self.data.units(self.data.split.val)

    @cached_property
    def val_close(self) -> np.ndarray:
        return self.data.pooled.closes(self.data.split.val)

    def train_size(self) -> int:
        return len(self.data.split.train)

    def tensors(self, items: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
        pooled = self.data.pooled
        return to_device(pooled.inputs(items), device), to_device(pooled.masks(items), device)

    def batch(self, positions: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        items = self.data.split.train[positions]
        y = (self.data.pooled.fit_targets(items) / self.data.units(items)).astype(np.float32)
        return *self.tensors(items, device), to_device(y, device)

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor, Tensor]
             ) -> tuple[Tensor, dict[str, Tensor]]:
        x, mask, y = batch
        out = model(x, mask)
        main = head_loss(out, y, self.head, self.loss_kind)
        return main + out.aux_loss, {"price_loss": main.detach(), "aux_loss": out.aux_loss.detach()}

    def predict(self, model: nn.Module, items: np.ndarray, device: torch.device,
                ) -> Generator[Progress, None, PriceOutput]:
        """The network's outputs for `items` in batches (network units, on the CPU); Progress per batch."""
        outs = []
        for i in range(0, len(items), EVAL_BATCH):
            outs.append(model(*self.tensors(items[i:i + EVAL_BATCH], device)))
            yield Progress(min(i + EVAL_BATCH, len(items)), len(items), "Validating")
        joined = {name: torch.cat([getattr(o, name).float().cpu() for o in outs])
                  for name in ("prices", "features", "quantiles", "t_params") if getattr(outs[0], name) is not None}
        return PriceOutput(aux_loss=torch.zeros(()), **joined)

    def evaluate(self, model: nn.Module, device: torch.device,
                 ) -> Generator[Progress, None, tuple[float, dict[str, float]]]:
        out = yield from self.predict(model, self.data.split.val, device)
        true = self.val_targets / self.val_units
        val_loss = head_loss(out, torch.from_numpy(true).float(), self.head, self.loss_kind)
        median = out.prices.double().numpy()
        metrics = price_metrics(median * self.val_units, self.val_targets, self.val_close)
        return float(val_loss), {**metrics, **interval_metrics(output_quantiles(out), true)}

    def checkpoint_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"sources": self.data.sources, "fingerprints": self.data.fingerprints,
                                 "quantile_levels": list(QUANTILES)}
        if self.data.target_scale is not None:
            extra["target_scale"] = [float(s) for s in self.data.target_scale]
        return extra


def train_price(data: list[str], *, model_cfg: PriceModelConfig, data_cfg: DataConfig,
                train_cfg: TrainConfig, store: RunStore, runs_dir: Path | None = None,
                resume: str | None = None, cancel: CancelToken | None = None,
                ) -> Generator[Event, None, Finished]:
    """Train stage 1 and return its Finished record. resume: a price run id to continue from its
    last checkpoint with the recipe it was started with (train_cfg then only places it)."""
    recipe = (recorded_recipe(store, resume, "price").with_runtime(train_cfg) if resume
              else RunRecipe("price", list(data), model_cfg, data_cfg, train_cfg))
    return (yield from run_price(recipe, store=store, runs_dir=runs_dir, resume=resume, cancel=cancel))


def run_price(recipe: RunRecipe, *, store: RunStore, runs_dir: Path | None = None,
              resume: str | None = None, cancel: CancelToken | None = None, parent: str | None = None,
              ) -> Generator[Event, None, Finished]:
    """Train the price run `recipe` describes (`parent`: the run that made it, its lineage in the
    history). Bad input raises (DataImportError / ValueError) before a run is recorded; after that
    every outcome is the returned Finished record."""
    model_cfg, data_cfg = recipe.model, recipe.data
    if (model_cfg.window, model_cfg.horizon) != (data_cfg.window, data_cfg.horizon):
        raise ValueError(f"model window/horizon {model_cfg.window}/{model_cfg.horizon} differ from "
                         f"the data's {data_cfg.window}/{data_cfg.horizon}")
    if model_cfg.head not in HEADS:
        raise ValueError(f"unknown price head {model_cfg.head!r}; choose one of {list(HEADS)}")
    if data_cfg.feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {data_cfg.feature_set!r}; choose one of {sorted(FEATURE_SETS)}")
    if data_cfg.target not in TARGETS:
        raise ValueError(f"unknown target {data_cfg.target!r}; choose one of {list(TARGETS)}")
    if model_cfg.n_features != n_features(data_cfg):
        raise ValueError(f"model n_features {model_cfg.n_features} differs from the {n_features(data_cfg)} input "
                         f"channels of the {data_cfg.feature_set!r} feature set with context {data_cfg.context!r}")
    if resume and recorded_cut_dates(data_cfg) is None:
        raise ValueError(f"run {resume} was recorded before calendar cut dates: resuming it would train "
                         "on another split than it started with; start a new run instead")
    yield Progress(0, 1, "Loading and windowing the data")  # before the run is recorded: news at once
    prepared = prepare_price_data(recipe.datasets, data_cfg)
    yield Progress(1, 1, "Loading and windowing the data")
    recipe = replace(recipe, data=replace(data_cfg, **prepared.cuts.to_dict()))  # recorded with the run
    split = split_json(prepared.cuts, prepared.pooled.sets, data_cfg.horizon)
    entry = RunEntry(recipe, ",".join(prepared.fingerprints), Path(runs_dir or store.runs_dir), resume,
                     facts={"split": split}, parent=parent)
    stage = PriceStage(prepared, recipe.train.loss, model_cfg.head)
    return (yield from fit(lambda: build_price_model(model_cfg), stage, recipe.train, store=store, run=entry,
                           cancel=cancel, configs=recipe.checkpoint_configs()))


__all__ = [
    "PriceData",
    "PriceStage",
    "head_loss",
    "interval_metrics",
    "prepare_price_data",
    "price_cut_dates",
    "price_metrics",
    "price_split",
    "price_windows",
    "run_price",
    "train_price",
]
