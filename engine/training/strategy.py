"""Stage 2 job: train the strategy network on frozen, cached price-network features.

The Transformer runs once per (instrument, day) (encode_features, after the run is recorded, cached);
a training sequence is then `start + arange(seq_len)` into per-day arrays: nothing is copied 20x.
Stage 2 never learns from in-sample features: it trains and validates only inside the price
network's validation period (days after its last training target), cut there by its own date
(strategy_cut_dates); its test part is stage 1's. Feature standardisation and the adaptive regime
bounds come from stage 2's training days only.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from engine.backtest.run import backtest_equity
from engine.config import (
    STRATEGY_INPUTS,
    STRATEGY_LOSSES,
    DataConfig,
    StrategyLossConfig,
    StrategyModelConfig,
    TrainConfig,
)
from engine.data import (
    CutDates,
    WindowSet,
    build_windows,
    load_bars,
    recorded_cut_dates,
    sequence_starts,
    split_spans,
    strategy_cut_dates,
    strategy_split,
)
from engine.events import CancelToken, Event, Finished, Progress
from engine.forecast import LoadedPriceModel, load_price_model
from engine.losses import net_returns, strategy_loss, utility_loss
from engine.models import StrategyNetwork
from engine.policy import (
    DISTRIBUTION_STATS,
    day_features_progress,
    policy_positions,
    previous_positions,
    strategy_inputs,
)
from engine.regime import DEFAULT_THRESHOLDS, REGIME_NAMES, causal_labels, hindsight_labels
from engine.store import RunStore
from engine.training.recipe import RunRecipe, recorded_recipe
from engine.training.trainer import RunEntry, TrainStage, fit, to_device


@dataclass
class StrategyData:
    """Per-day arrays of all instruments laid end to end, and sequence starts into them.

    Sequences never cross an instrument: a start is only valid when its whole sequence lies in
    one instrument's split part.
    """

    features: np.ndarray  # [D, F] float32 standardised (NaN rows where no window exists); empty
    # until encode_features has run (the long part, after the run is recorded)
    returns: np.ndarray  # [D] next-day simple returns
    sigma: np.ndarray  # [D] causal EWMA daily volatility known at each day's close (the utility's risk)
    regimes: np.ndarray  # [D] int8 causal regime labels (-1 unknown): the utility's regime-dependent lambda
    warm: np.ndarray  # [D] bool: a walk starting that day may warm-start (its seq_len days before lie in
    # the same instrument, all inside stage 2's own days)
    train: np.ndarray  # sequence starts (global day indices)
    val: np.ndarray
    val_days: list[np.ndarray]  # per instrument: validation days with a full walk (global indices)
    feature_mean: np.ndarray
    feature_std: np.ndarray
    regime_bounds: tuple[float, float]  # adaptive voter quantiles of train period means
    sources: list[str]
    fingerprints: list[str]
    split: dict[str, list[str | None]]  # stage 2's own parts, as the CLI prints them
    features_from: list[dict[str, Any]]  # [{"price_train_end", "encoded": [first, last]}]
    sets: list[WindowSet]  # per instrument, in the order of the per-day arrays
    feature_dim: int  # width of the strategy inputs (engine.policy.strategy_input_names)
    model_cfg: StrategyModelConfig  # what the network reads (inputs, regime_input)


def _standardise(features: np.ndarray, train_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = features[train_days]
    return ref.mean(axis=0), np.maximum(ref.std(axis=0), 1e-6)


def strategy_sequences(ws: WindowSet, price_cuts: CutDates, cuts: CutDates, seq_len: int,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation sequence starts (day indices of one instrument): every day of every
    sequence, and its next return, lies after the price network's last training target."""
    split = strategy_split(ws, price_cuts, cuts)
    n = len(ws.dates)
    return sequence_starts(split.train, seq_len, n), sequence_starts(split.val, seq_len, n)


def price_cuts_of(price: LoadedPriceModel) -> CutDates:
    """The cut dates the price network was trained with; ValueError for one from before them."""
    cuts = recorded_cut_dates(price.data_cfg)
    if cuts is None:
        raise ValueError(f"price network {price.path} has no calendar cut dates (it predates them): "
                         "stage 2 could not tell on which days its features are out of sample; "
                         "retrain the price network")
    return cuts


def inherit_price_data(recipe: RunRecipe, price: LoadedPriceModel) -> RunRecipe:
    """Stage 2 on stage 1's sources and cut dates: inherited when not given, refused when they
    differ (sources are compared by content in prepare_strategy_data)."""
    cuts = price_cuts_of(price)
    for name, ours in cuts.to_dict().items():
        given = getattr(recipe.data, name)
        if given is not None and given != ours:
            raise ValueError(f"{name} {given} differs from the price run {recipe.price_run}'s {ours}: "
                             "stage 2 inherits stage 1's cut dates; leave it out")
    data = replace(recipe.data, window=price.model_cfg.window, horizon=price.model_cfg.horizon,
                   adjust=price.data_cfg.adjust, feature_set=price.data_cfg.feature_set, **cuts.to_dict())
    return replace(recipe, datasets=list(recipe.datasets or price.sources), data=data)


def warm_days(in_stage: np.ndarray, seq_len: int) -> np.ndarray:
    """[D] bool: day d's seq_len predecessors are all `in_stage` (one instrument's stage-2 days)."""
    ok = np.concatenate([[0], np.cumsum(in_stage)])
    d = np.arange(len(in_stage))
    return (d >= seq_len) & (ok[d] - ok[np.maximum(d - seq_len, 0)] == seq_len)


def strategy_input_dim(price: LoadedPriceModel, model_cfg: StrategyModelConfig) -> int:
    """Width of what a network of model_cfg reads of `price` (engine.policy.strategy_input_names)."""
    if model_cfg.inputs not in STRATEGY_INPUTS:
        raise ValueError(f"unknown strategy inputs {model_cfg.inputs!r}; choose one of {list(STRATEGY_INPUTS)}")
    if model_cfg.inputs == "distribution" and price.model_cfg.head == "point":
        raise ValueError("the price run has a point head, no distribution to read: train a quantile or "
                         "student_t price run, or read its features (inputs=features)")
    horizon = price.model_cfg.horizon
    width = price.feature_dim if model_cfg.inputs == "features" else len(DISTRIBUTION_STATS) * horizon + 1
    return width + len(REGIME_NAMES) * model_cfg.regime_input


def prepare_strategy_data(price: LoadedPriceModel, data: list[str], cfg: DataConfig,
                          model_cfg: StrategyModelConfig) -> StrategyData:
    """Load the price run's instruments, train and validate only on days the price network was not
    fitted on (strategy_cut_dates), pool end to end: everything but the features, which
    encode_features computes (the long part) once the run is recorded."""
    if not data:
        raise ValueError("no data: give at least one sample name or file")
    dim = strategy_input_dim(price, model_cfg)
    price_cuts = price_cuts_of(price)
    tables = [load_bars(src, adjust=cfg.adjust) for src in data]
    fps = [t.fingerprint for t in tables]
    if price.fingerprints and sorted(fps) != sorted(price.fingerprints):
        raise ValueError(f"data {', '.join(data)} differ from the price run's "
                         f"({', '.join(price.sources)}): stage 2 trains on the instruments stage 1 "
                         "was cut on; leave the data out to inherit them")
    sets = [build_windows(replace(t, frame=t.frame.loc[cfg.start:cfg.end]), cfg.window, cfg.horizon,
                          price.data_cfg.feature_set) for t in tables]
    cuts = strategy_cut_dates(sets, price_cuts)
    rets, sigmas, labels, stage_days, trains, vals, val_days, used = [], [], [], [], [], [], [], []
    offset = 0
    for ws in sets:
        train, val = strategy_sequences(ws, price_cuts, cuts, cfg.seq_len)
        n = len(ws.dates)
        rets.append(ws.next_returns(np.arange(n)))
        sigmas.append(ws.sigma)
        labels.append(causal_labels(ws.close))
        covered = np.zeros(n, dtype=bool)
        covered[(np.concatenate([train, val])[:, None] + np.arange(cfg.seq_len)).ravel()] = True
        stage_days.append(covered)
        trains.append(train + offset)
        vals.append(val + offset)
        val_days.append(val + cfg.seq_len - 1 + offset)  # each closes a walk wholly inside val
        days = np.concatenate([train, val])[:, None] + np.arange(cfg.seq_len)
        if days.size:
            used += [ws.dates[days.min()], ws.dates[days.max()]]
        offset += n
    returns = np.concatenate(rets)
    train, val = np.concatenate(trains), np.concatenate(vals)
    if not len(train) or not len(val):
        raise ValueError(f"too little data for {cfg.seq_len}-day sequences in stage 2's train and "
                         f"validation days ({cuts.train_end} splits the price network's validation "
                         f"period up to {cuts.val_end}; train {len(train)}, val {len(val)} sequences)")
    steps = np.arange(cfg.seq_len)
    period_means = returns[train[:, None] + steps].mean(axis=1)
    low, high = np.quantile(period_means, [DEFAULT_THRESHOLDS.adaptive_low,
                                           DEFAULT_THRESHOLDS.adaptive_high])
    split = split_spans(sets, [strategy_split(ws, price_cuts, cuts) for ws in sets], cuts)
    features_from = [{"price_train_end": price_cuts.train_end,
                      "encoded": [f"{min(used):%Y-%m-%d}", f"{max(used):%Y-%m-%d}"]}]
    return StrategyData(np.empty((0, dim), np.float32), returns, np.concatenate(sigmas), np.concatenate(labels),
                        warm_days(np.concatenate(stage_days), cfg.seq_len), train, val, val_days,
                        np.empty(dim), np.empty(dim), (float(low), float(high)),
                        list(data), fps, split, features_from, sets, dim, model_cfg)


def encode_features(prepared: StrategyData, price: LoadedPriceModel, seq_len: int, cache_dir: Path,
                    cancel: CancelToken | None = None) -> Generator[Progress, None, None]:
    """What the network reads of every day (engine.policy.strategy_inputs), instrument by instrument
    (the price network's part cached per instrument, checkpoint and inputs), standardised on stage 2's
    training days; Progress per batch of windows, InterruptedError once `cancel` is set."""
    feats = []
    cfg = prepared.model_cfg
    for k, (ws, fingerprint) in enumerate(zip(prepared.sets, prepared.fingerprints)):
        message = f"Encoding features of {ws.instrument} ({k + 1}/{len(prepared.sets)})"
        raw = yield from day_features_progress(price, ws, cache_dir, fingerprint, cancel=cancel,
                                               message=message, inputs=cfg.inputs)
        feats.append(strategy_inputs(raw, ws, cfg.regime_input))
    features = np.concatenate(feats)
    train_days = np.unique((prepared.train[:, None] + np.arange(seq_len)).ravel())
    mean, std = _standardise(features, train_days)
    prepared.features = ((features - mean) / std).astype(np.float32)
    prepared.feature_mean, prepared.feature_std = mean, std


@dataclass
class StrategyBatch:
    """Walks of seq_len days: what the network reads and what its loss needs, all [B, S] but noted."""

    features: Tensor  # [B, S, F]
    returns: Tensor  # next-day simple returns
    hindsight: Tensor  # [B] hindsight regime of each walk (the "excess" loss's benchmark)
    sigma: Tensor  # causal daily volatility at each day (the "utility" loss's risk)
    regimes: Tensor  # causal regime labels of each day (the utility's regime-dependent lambda)
    before: Tensor  # [B, S, F] the seq_len days before each walk (its warm start)
    warm: Tensor  # [B] bool: the days before may be read


def annealed_tau(cfg: StrategyModelConfig, step: int, total: int) -> float:
    """Gumbel-Softmax temperature at optimiser step `step` of `total`: exponential from tau_start down to
    tau_floor, reached at tau_anneal of the steps and held there."""
    reach = max(1.0, cfg.tau_anneal * total)
    return max(cfg.tau_floor, cfg.tau_start * (cfg.tau_floor / cfg.tau_start) ** min(1.0, step / reach))


class StrategyStage(TrainStage):
    kind = "strategy"

    def __init__(self, prepared: StrategyData, model_cfg: StrategyModelConfig,
                 loss_cfg: StrategyLossConfig, seq_len: int, price: LoadedPriceModel,
                 cache_dir: Path) -> None:
        self.data, self.model_cfg, self.loss_cfg = prepared, model_cfg, loss_cfg
        self.steps = np.arange(seq_len)
        self.tau = model_cfg.tau_start
        self.price, self.cache_dir = price, cache_dir

    def train_size(self) -> int:
        return len(self.data.train)

    def prepare(self, cancel: CancelToken) -> Iterator[Progress]:
        """Encode every day with the frozen price network (minutes for a long history on a CPU)."""
        return encode_features(self.data, self.price, len(self.steps), self.cache_dir, cancel)

    def sequences(self, starts: np.ndarray, device: torch.device) -> StrategyBatch:
        days = starts[:, None] + self.steps  # [B, S] indices, no copies of the per-day arrays
        returns = to_device(self.data.returns[days], device)
        before = (starts[:, None] - len(self.steps) + self.steps).clip(0)  # the walk's predecessor days
        return StrategyBatch(to_device(self.data.features[days], device), returns.float(),
                             hindsight_labels(returns, bounds=self.data.regime_bounds),
                             to_device(self.data.sigma[days], device).float(),
                             to_device(self.data.regimes[days], device),
                             to_device(self.data.features[before], device),
                             to_device(self.data.warm[starts] & self.model_cfg.warm_start, device))

    def batch(self, positions: np.ndarray, device: torch.device) -> StrategyBatch:
        return self.sequences(self.data.train[positions], device)

    def objective(self, model: nn.Module, batch: StrategyBatch, **forward: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """The configured loss of the network's walks over `batch`, each from the position the current
        network picks the day before it (warm start; flat where the days before are not stage 2's)."""
        initial = previous_positions(model, batch.before, batch.warm) if self.model_cfg.warm_start else None
        positions = model(batch.features, initial=initial, **forward).positions.float()
        if self.loss_cfg.kind == "utility":
            return utility_loss(positions, batch.returns, batch.sigma, self.loss_cfg, batch.regimes, initial)
        if self.loss_cfg.kind == "excess":
            return strategy_loss(positions, batch.returns, batch.hindsight, self.loss_cfg, initial=initial)
        raise ValueError(f"unknown strategy loss {self.loss_cfg.kind!r}; choose one of {list(STRATEGY_LOSSES)}")

    def loss(self, model: nn.Module, batch: StrategyBatch) -> tuple[Tensor, dict[str, Any]]:
        loss, parts = self.objective(model, batch, tau=self.tau)
        return loss, {**parts, "tau": self.tau}

    def on_step(self, step: int, total: int) -> None:
        self.tau = annealed_tau(self.model_cfg, step, total)

    def evaluate(self, model: nn.Module, device: torch.device) -> tuple[float, dict[str, float]]:
        """Deterministic (argmax) loss on validation sequences, and a backtest of the policy over
        each instrument's validation days, after costs, next to buy and hold."""
        val_loss, parts = self.objective(model, self.sequences(self.data.val, device), deterministic=True)
        metrics = {f"val_{k}": float(v) for k, v in parts.items()}
        metrics.update(self._policy_backtest(model, device))
        return float(val_loss), metrics

    def _policy_backtest(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Mean over instruments of the total return and the annualised Sharpe ratio (daily net returns,
        252 days, no risk-free rate) of the argmax policy and of buy and hold."""
        cost = self.loss_cfg.cost_bps * 1e-4
        totals, sharpes = [], []
        for days in self.data.val_days:
            if len(days) < 2:
                continue
            pos = policy_positions(model, self.data.features, days, len(self.steps), device,
                                   self.model_cfg.warm_start)
            # backtest_equity wants close_t / close_{t-1} - 1 per day; ours are next-day returns
            close_returns = np.concatenate([[0.0], self.data.returns[days]])
            paths = np.stack([np.append(pos, pos[-1]), np.full(len(days) + 1, 10)])
            totals.append(backtest_equity(close_returns, paths.astype(np.float64), cost) - 1)
            net, _ = net_returns(torch.from_numpy(paths[:, :-1]), torch.from_numpy(self.data.returns[days]), cost * 1e4)
            sharpes.append((net.mean(dim=1) / net.std(dim=1).clamp_min(1e-12) * np.sqrt(252)).numpy())
        if not totals:
            return {}
        strat, hold = np.mean(totals, axis=0)
        sharpe, hold_sharpe = np.mean(sharpes, axis=0)
        return {"val_total_return": float(strat), "val_buy_and_hold": float(hold),
                "val_excess_return": float(strat - hold), "val_sharpe": float(sharpe),
                "val_buy_and_hold_sharpe": float(hold_sharpe)}

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"feature_mean": self.data.feature_mean.tolist(),
                "feature_std": self.data.feature_std.tolist(),
                "regime_bounds": list(self.data.regime_bounds),
                "sources": self.data.sources, "fingerprints": self.data.fingerprints,
                "tau": self.tau}


def train_strategy(price_run: str, data: list[str], *, model_cfg: StrategyModelConfig,
                   loss_cfg: StrategyLossConfig, data_cfg: DataConfig, train_cfg: TrainConfig,
                   store: RunStore, runs_dir: Path | None = None, resume: str | None = None,
                   cancel: CancelToken | None = None) -> Generator[Event, None, Finished]:
    """Train stage 2 on the frozen best checkpoint of `price_run`; return its Finished record.
    resume: a strategy run id to continue with the recipe it was started with."""
    recipe = (recorded_recipe(store, resume, "strategy").with_runtime(train_cfg) if resume
              else RunRecipe("strategy", list(data), model_cfg, data_cfg, train_cfg, loss_cfg, price_run))
    return (yield from run_strategy(recipe, store=store, runs_dir=runs_dir, resume=resume,
                                    cancel=cancel))


def run_strategy(recipe: RunRecipe, *, store: RunStore, runs_dir: Path | None = None,
                 resume: str | None = None, cancel: CancelToken | None = None,
                 ) -> Generator[Event, None, Finished]:
    """Train the strategy run `recipe` describes. Bad input raises before a run is recorded;
    after that every outcome is the returned Finished record."""
    price_record = store.get_run(recipe.price_run)
    if price_record is None or price_record["kind"] != "price":
        raise ValueError(f"no price run {recipe.price_run!r} in {store.path}")
    price = load_price_model(recipe.price_run, store)
    recipe = inherit_price_data(recipe, price)
    root = Path(runs_dir or store.runs_dir)
    prepared = prepare_strategy_data(price, recipe.datasets, recipe.data, recipe.model)
    model_cfg = replace(recipe.model, feature_dim=prepared.feature_dim)
    recipe = replace(recipe, model=model_cfg, price_checkpoint=str(price.path),
                     price_sha256=price.sha256)
    stage = StrategyStage(prepared, model_cfg, recipe.loss, recipe.data.seq_len, price,
                          root / recipe.price_run / "feature-cache")
    entry = RunEntry(recipe, ",".join(prepared.fingerprints), root, resume,
                     facts={"split": prepared.split, "features_from": prepared.features_from})
    return (yield from fit(lambda: StrategyNetwork(model_cfg), stage, recipe.train, store=store,
                           run=entry, cancel=cancel, configs=recipe.checkpoint_configs()))


__all__ = [
    "StrategyBatch",
    "StrategyData",
    "StrategyStage",
    "annealed_tau",
    "encode_features",
    "inherit_price_data",
    "prepare_strategy_data",
    "price_cuts_of",
    "run_strategy",
    "strategy_input_dim",
    "strategy_sequences",
    "train_strategy",
    "warm_days",
]
