"""The trained strategy network as a plain function: bars in, a deterministic position 0..10 per day.

Day t's position is the argmax decision at the last step of a walk over the `seq_len` days ending
at t, from a fresh state, exactly as the network was trained (every walk starts from zero state; a
warm-starting network's walk starts from the position it picks the day before, itself the end of the
walk over the seq_len days before). All walks of a period run as one batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.atomic import atomic_save_npy
from engine.checkpoint import CheckpointError, load_checkpoint, load_model_state
from engine.config import QUANTILES, STRATEGY_INPUTS, DataConfig, StrategyModelConfig, from_dict
from engine.data import WindowSet
from engine.events import CancelToken, Progress, run_to_end
from engine.forecast import (
    LoadedPriceModel,
    is_run_id,
    load_price_model,
    outputs_progress,
    quantiles_of,
    read_checkpoint,
)
from engine.models import PriceOutput, StrategyNetwork
from engine.regime import REGIME_NAMES, causal_labels
from engine.store import RunStore

WALK_BATCH = 4096
DISTRIBUTION_STATS = ("median", "q90-q10", "q75-q25", "q05", "q95")  # per horizon (distribution_inputs)


def distribution_inputs(quantile_returns: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """[n, 5 H + 1] what stage 2 reads of a distributional forecast (quantile_returns [n, H, QUANTILES]
    in h-day log returns, sigma [n] the EWMA daily volatility): per statistic of DISTRIBUTION_STATS and
    horizon the median, the 80 % and 50 % spreads and the 5 % and 95 % tails, then sigma."""
    q = {level: quantile_returns[..., QUANTILES.index(level)] for level in QUANTILES}
    stats = [q[0.5], q[0.9] - q[0.1], q[0.75] - q[0.25], q[0.05], q[0.95]]
    return np.concatenate([*stats, sigma[:, None]], axis=1).astype(np.float32)


def strategy_input_names(model_cfg: StrategyModelConfig, horizon: int) -> list[str]:
    """Names of the columns strategy_inputs gives a network of `model_cfg`."""
    if model_cfg.inputs == "distribution":
        names = [f"{stat} h{h}" for stat in DISTRIBUTION_STATS for h in range(1, horizon + 1)] + ["sigma"]
    else:
        names = ([f"price feature {i + 1}" for i in range(model_cfg.feature_dim - horizon
                                                           - len(REGIME_NAMES) * model_cfg.regime_input)]
                 + [f"forecast h{h}" for h in range(1, horizon + 1)])
    return names + [f"regime {name}" for name in REGIME_NAMES] * model_cfg.regime_input


def strategy_inputs(raw: np.ndarray, ws: WindowSet, regime_input: bool) -> np.ndarray:
    """day_features_progress's [T, F] rows, with the one-hot causal regime of each day appended when
    regime_input (all zero while the regime is unknown)."""
    if not regime_input:
        return raw
    labels = causal_labels(ws.close)
    one_hot = (labels[:, None] == np.arange(len(REGIME_NAMES))).astype(np.float32)
    return np.concatenate([raw, one_hot], axis=1)


def day_features_progress(price: LoadedPriceModel, ws: WindowSet, cache_dir: Path | None,
                          fingerprint: str, days: np.ndarray | None = None,
                          cancel: CancelToken | None = None, message: str = "Encoding features",
                          inputs: str = "features") -> Generator[Progress, None, np.ndarray]:
    """Float32 rows per day of what the strategy reads of the price network for the window ending that
    day: inputs "features", [T, d_model + horizon] its strategy features and scaled forecast; inputs
    "distribution", [T, 5 H + 1] distribution_inputs (NaN where not computed: before the first full
    window, or outside `days` when given). With a cache_dir the whole series is computed once per
    (instrument data, checkpoint, inputs) and cached as a plain .npy (no pickle). A job step: Progress
    per batch of windows, InterruptedError after `cancel` (nothing is cached then)."""
    if inputs not in STRATEGY_INPUTS:
        raise ValueError(f"unknown strategy inputs {inputs!r}; choose one of {list(STRATEGY_INPUTS)}")
    path = None
    if cache_dir is not None:
        span = f"{ws.dates[0]:%Y-%m-%d}:{ws.dates[-1]:%Y-%m-%d}:{len(ws.dates)}"
        kind = "" if inputs == "features" else f":{inputs}"  # the features' keys predate the choice
        key = hashlib.sha256(f"{fingerprint}:{span}:{price.sha256}{kind}".encode()).hexdigest()[:24]
        path = Path(cache_dir) / f"{key}.npy"
        if path.is_file():
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == len(ws.dates):
                return cached
        days = None
    ends = ws.ends if days is None else np.intersect1d(ws.ends, days)
    encoded = yield from outputs_progress(price, ws, ends, cancel, message)
    out = day_rows(price, ws, ends, encoded, inputs)
    if path is not None:
        atomic_save_npy(path, out)
    return out


def day_rows(price: LoadedPriceModel, ws: WindowSet, ends: np.ndarray, encoded: PriceOutput,
             inputs: str) -> np.ndarray:
    """day_features_progress's [T, F] float32 rows from the price network's outputs at window ends
    `ends` (NaN on every other day)."""
    if inputs == "distribution":
        forecast = quantiles_of(price, ws, ends, encoded)
        rows = distribution_inputs(forecast.quantile_returns, forecast.sigma)
    else:
        rows = np.concatenate([encoded.features.float().numpy(), encoded.prices.numpy()], axis=1)
    out = np.full((len(ws.dates), rows.shape[1]), np.nan, dtype=np.float32)
    out[ends] = rows
    return out


def day_features(price: LoadedPriceModel, ws: WindowSet, cache_dir: Path | None,
                 fingerprint: str, days: np.ndarray | None = None, inputs: str = "features") -> np.ndarray:
    """day_features_progress run to its end."""
    return run_to_end(day_features_progress(price, ws, cache_dir, fingerprint, days, inputs=inputs))


@torch.no_grad()
def previous_positions(model: nn.Module, before: torch.Tensor, usable: torch.Tensor) -> torch.Tensor:
    """[B] the position the network picks (argmax, from flat) at the end of `before` [B, S, F], the S
    days before a walk: where that walk starts when the network warm-starts; flat where `usable` [B] is
    False (the days before are missing or outside the data stage 2 may read)."""
    picked = model(torch.nan_to_num(before), deterministic=True).positions[:, -1]
    return torch.where(usable, picked, torch.zeros_like(picked))


@torch.no_grad()
def policy_positions(model: nn.Module, features: np.ndarray, days: np.ndarray, seq_len: int,
                     device: torch.device | str = "cpu", warm_start: bool = False) -> np.ndarray:
    """Integer positions [len(days)] for decision days (each needs seq_len - 1 earlier days). With
    warm_start each walk starts from the position picked on the day before it (previous_positions over
    the seq_len days before; flat where those are not all encoded), as the network was trained."""
    was_training = model.training
    model.eval()
    days = np.asarray(days, dtype=np.int64)
    walks = days[:, None] - np.arange(seq_len - 1, -1, -1)  # [n, S] ending at each day
    finite = np.isfinite(features).all(axis=1)
    out = []
    for i in range(0, len(days), WALK_BATCH):
        x = torch.from_numpy(features[walks[i:i + WALK_BATCH]]).to(device)
        initial = None
        if warm_start:
            before = walks[i:i + WALK_BATCH] - seq_len
            usable = (before[:, 0] >= 0) & finite[before.clip(0)].all(axis=1)
            initial = previous_positions(model, torch.from_numpy(features[before.clip(0)]).to(device),
                                         torch.from_numpy(usable).to(device))
        out.append(model(x, deterministic=True, initial=initial).positions[:, -1].round().to(torch.int64).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.empty(0, dtype=np.int64)


@dataclass
class LoadedStrategy:
    model: StrategyNetwork  # eval mode
    model_cfg: StrategyModelConfig
    data_cfg: DataConfig
    price: LoadedPriceModel
    feature_mean: np.ndarray
    feature_std: np.ndarray
    sha256: str
    path: Path
    sources: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    members: list[LoadedStrategy] = field(default_factory=list)  # a seed ensemble's; positions averaged


def load_strategy_model(checkpoint_or_run: str | Path, store: RunStore | None = None,
                        device: str | torch.device = "cpu") -> LoadedStrategy:
    """Rebuild a strategy network and the frozen price network it was trained on (weights_only)."""
    path, ckpt, sha = read_checkpoint(checkpoint_or_run, store)
    if ckpt["extra"].get("ensemble"):
        return _load_ensemble(path, ckpt["extra"]["ensemble"], sha, device)
    try:
        configs, extra = ckpt["configs"], ckpt["extra"]
        model_cfg = from_dict(StrategyModelConfig, configs["model"])
        data_cfg = from_dict(DataConfig, configs["data"])
        price_ref = configs["price"]
        mean = np.asarray(extra["feature_mean"], dtype=np.float32)
        std = np.asarray(extra["feature_std"], dtype=np.float32)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a strategy-network checkpoint (missing {exc})") from None
    price = load_price_model(price_ref["checkpoint"], device=device)
    if price.sha256 != price_ref["sha256"]:
        raise CheckpointError(f"{path}: its price checkpoint {price_ref['checkpoint']} changed "
                              "since the strategy was trained (sha256 mismatch)")
    model = StrategyNetwork(model_cfg)
    load_model_state(model, ckpt["model"], path)
    return LoadedStrategy(model.to(device).eval(), model_cfg, data_cfg, price, mean, std, sha, path,
                          list(extra.get("sources", [])), list(extra.get("fingerprints", [])))


def _load_ensemble(path: Path, refs: list[dict], sha: str, device: str | torch.device) -> LoadedStrategy:
    """A seed ensemble of strategies: members checked against their recorded hashes, all reading
    the same price network (one encoding serves them all)."""
    members = [load_strategy_model(ref["checkpoint"], device=device) for ref in refs]
    for ref, member in zip(refs, members, strict=True):
        if member.sha256 != ref["sha256"]:
            raise CheckpointError(f"{path}: member {ref['checkpoint']} changed since the ensemble "
                                  "was recorded (sha256 mismatch)")
    if len({m.price.sha256 for m in members}) > 1:
        raise CheckpointError(f"{path}: members read different price networks")
    return replace(members[0], sha256=sha, path=path, members=members)


def model_kind(model_ref: str | Path, store: RunStore | None = None) -> str:
    """The kind of a run id as recorded ("price", "strategy", ...), or of a checkpoint file: a strategy
    checkpoint records the price network it reads ("price" in its configs). ValueError: no such run."""
    if not is_run_id(model_ref):
        return "strategy" if "price" in load_checkpoint(model_ref).get("configs", {}) else "price"
    store = store or RunStore()
    record = store.get_run(str(model_ref))
    if record is None:
        raise ValueError(f"no run {model_ref!r} in {store.path}")
    return record["kind"]


def standardised_inputs(loaded: LoadedStrategy, raw: np.ndarray, ws: WindowSet) -> np.ndarray:
    """[T, feature_dim] float32 what the network reads: day_features_progress's rows (its inputs),
    the regime when it reads one, standardised as in training."""
    x = strategy_inputs(raw, ws, loaded.model_cfg.regime_input)
    return ((x - loaded.feature_mean) / loaded.feature_std).astype(np.float32)


def strategy_positions_progress(loaded: LoadedStrategy, ws: WindowSet, days: np.ndarray,
                                cache_dir: Path | None = None, fingerprint: str = "",
                                cancel: CancelToken | None = None,
                                ) -> Generator[Progress, None, np.ndarray]:
    """Deterministic positions 0..10 for decision days of one instrument, as a job step (Progress
    while the price network encodes the walked days)."""
    walked = walked_days(loaded, ws, days)
    raw = yield from day_features_progress(loaded.price, ws, cache_dir, fingerprint, walked, cancel,
                                           f"Encoding {ws.instrument} for the strategy", loaded.model_cfg.inputs)
    return positions_from_rows(loaded, raw, ws, days)


def walked_days(loaded: LoadedStrategy, ws: WindowSet, days: np.ndarray) -> np.ndarray:
    """The days (sorted) whose encodings the positions on decision `days` read: each day's walk and,
    for a warm-starting network, the walk before it. ValueError when a day lacks the history."""
    first = ws.window - 1 + loaded.data_cfg.seq_len - 1
    days = np.asarray(days, dtype=np.int64)
    if len(days) and days.min() < first:
        raise ValueError(f"{ws.instrument}: a position needs {first + 1} days of history "
                         f"({ws.window}-day window + {loaded.data_cfg.seq_len}-day walk); "
                         f"day {days.min() + 1} of {len(ws.dates)} has fewer")
    seq_len, cfg = loaded.data_cfg.seq_len, loaded.model_cfg
    reach = seq_len * (2 if cfg.warm_start else 1)  # a warm start walks the seq_len days before, too
    walked = np.unique(days[:, None] - np.arange(reach)) if len(days) else days
    return walked[walked >= 0]


def positions_from_rows(loaded: LoadedStrategy, raw: np.ndarray, ws: WindowSet, days: np.ndarray) -> np.ndarray:
    """Deterministic positions 0..10 on decision `days` from day_features_progress's rows `raw`."""
    days = np.asarray(days, dtype=np.int64)
    seq_len = loaded.data_cfg.seq_len
    positions = [policy_positions(m.model, standardised_inputs(m, raw, ws), days, seq_len, loaded.price.device,
                                  m.model_cfg.warm_start)
                 for m in loaded.members or [loaded]]
    return np.rint(np.mean(positions, axis=0)).astype(np.int64)  # a seed ensemble: averaged, rounded


def strategy_positions(loaded: LoadedStrategy, ws: WindowSet, days: np.ndarray,
                       cache_dir: Path | None = None, fingerprint: str = "") -> np.ndarray:
    """Deterministic positions 0..10 for decision days of one instrument."""
    return run_to_end(strategy_positions_progress(loaded, ws, days, cache_dir, fingerprint))


__all__ = [
    "DISTRIBUTION_STATS",
    "LoadedStrategy",
    "day_features",
    "day_features_progress",
    "day_rows",
    "distribution_inputs",
    "load_strategy_model",
    "model_kind",
    "policy_positions",
    "positions_from_rows",
    "previous_positions",
    "standardised_inputs",
    "strategy_input_names",
    "strategy_inputs",
    "strategy_positions",
    "strategy_positions_progress",
    "walked_days",
]
