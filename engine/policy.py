"""The trained strategy network as a plain function: bars in, a deterministic position 0..10 per day.

Day t's position is the argmax decision at the last step of a walk over the `seq_len` days ending
at t, from a fresh state, exactly as the network was trained (every walk starts from zero state).
All walks of a period run as one batch.
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
from engine.config import DataConfig, StrategyModelConfig, from_dict
from engine.data import WindowSet
from engine.events import CancelToken, Progress, run_to_end
from engine.forecast import LoadedPriceModel, encode_progress, is_run_id, load_price_model, read_checkpoint
from engine.models import StrategyNetwork
from engine.store import RunStore

WALK_BATCH = 4096


def day_features_progress(price: LoadedPriceModel, ws: WindowSet, cache_dir: Path | None,
                          fingerprint: str, days: np.ndarray | None = None,
                          cancel: CancelToken | None = None, message: str = "Encoding features",
                          ) -> Generator[Progress, None, np.ndarray]:
    """[T, d_model + horizon] float32 per day: the price network's strategy features and its scaled
    forecast for the window ending that day (NaN where not computed: before the first full window,
    or outside `days` when given). With a cache_dir the whole series is computed once per
    (instrument data, checkpoint) and cached as a plain .npy (no pickle). A job step: Progress per
    batch of windows, InterruptedError after `cancel` (nothing is cached then)."""
    path = None
    if cache_dir is not None:
        span = f"{ws.dates[0]:%Y-%m-%d}:{ws.dates[-1]:%Y-%m-%d}:{len(ws.dates)}"
        key = hashlib.sha256(f"{fingerprint}:{span}:{price.sha256}".encode()).hexdigest()[:24]
        path = Path(cache_dir) / f"{key}.npy"
        if path.is_file():
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == len(ws.dates):
                return cached
        days = None
    ends = ws.ends if days is None else np.intersect1d(ws.ends, days)
    features, scaled = yield from encode_progress(price, ws, ends, cancel, message)
    out = np.full((len(ws.dates), features.shape[1] + scaled.shape[1]), np.nan, dtype=np.float32)
    out[ends] = np.concatenate([features, scaled], axis=1)
    if path is not None:
        atomic_save_npy(path, out)
    return out


def day_features(price: LoadedPriceModel, ws: WindowSet, cache_dir: Path | None,
                 fingerprint: str, days: np.ndarray | None = None) -> np.ndarray:
    """day_features_progress run to its end."""
    return run_to_end(day_features_progress(price, ws, cache_dir, fingerprint, days))


@torch.no_grad()
def policy_positions(model: nn.Module, features: np.ndarray, days: np.ndarray, seq_len: int,
                     device: torch.device | str = "cpu") -> np.ndarray:
    """Integer positions [len(days)] for decision days (each needs seq_len - 1 earlier days)."""
    was_training = model.training
    model.eval()
    days = np.asarray(days, dtype=np.int64)
    walks = days[:, None] - np.arange(seq_len - 1, -1, -1)  # [n, S] ending at each day
    out = []
    for i in range(0, len(days), WALK_BATCH):
        x = torch.from_numpy(features[walks[i:i + WALK_BATCH]]).to(device)
        out.append(model(x, deterministic=True).positions[:, -1].round().to(torch.int64).cpu())
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


def strategy_positions_progress(loaded: LoadedStrategy, ws: WindowSet, days: np.ndarray,
                                cache_dir: Path | None = None, fingerprint: str = "",
                                cancel: CancelToken | None = None,
                                ) -> Generator[Progress, None, np.ndarray]:
    """Deterministic positions 0..10 for decision days of one instrument, as a job step (Progress
    while the price network encodes the walked days)."""
    first = ws.window - 1 + loaded.data_cfg.seq_len - 1
    days = np.asarray(days, dtype=np.int64)
    if len(days) and days.min() < first:
        raise ValueError(f"{ws.instrument}: a position needs {first + 1} days of history "
                         f"({ws.window}-day window + {loaded.data_cfg.seq_len}-day walk); "
                         f"day {days.min() + 1} of {len(ws.dates)} has fewer")
    walked = np.unique(days[:, None] - np.arange(loaded.data_cfg.seq_len)) if len(days) else days
    raw = yield from day_features_progress(loaded.price, ws, cache_dir, fingerprint, walked, cancel,
                                           f"Encoding {ws.instrument} for the strategy")
    features = ((raw - loaded.feature_mean) / loaded.feature_std).astype(np.float32)
    return policy_positions(loaded.model, features, days, loaded.data_cfg.seq_len,
                            loaded.price.device)


def strategy_positions(loaded: LoadedStrategy, ws: WindowSet, days: np.ndarray,
                       cache_dir: Path | None = None, fingerprint: str = "") -> np.ndarray:
    """Deterministic positions 0..10 for decision days of one instrument."""
    return run_to_end(strategy_positions_progress(loaded, ws, days, cache_dir, fingerprint))


__all__ = [
    "LoadedStrategy",
    "day_features",
    "day_features_progress",
    "load_strategy_model",
    "model_kind",
    "policy_positions",
    "strategy_positions",
    "strategy_positions_progress",
]
