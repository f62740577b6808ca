"""The trained price network as a plain function: bars in, the next 7 closes out (in prices), with
their quantiles (QuantileForecast: the interface evaluation and the baselines read)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from engine.checkpoint import (
    CheckpointError,
    file_sha256,
    load_checkpoint,
    load_model_state,
)
from engine.config import QUANTILES, DataConfig, PriceModelConfig, from_dict
from engine.data import BarTable, PooledWindows, WindowSet, build_windows, load_bars
from engine.data.context import MarketContext, market_context
from engine.events import CancelToken, Progress, run_to_end
from engine.models import PriceNetwork, PriceOutput, output_quantiles
from engine.models.ensemble import PriceEnsemble
from engine.store import RunStore

BATCH = 256


@dataclass
class LoadedPriceModel:
    model: PriceNetwork  # eval mode
    model_cfg: PriceModelConfig
    data_cfg: DataConfig
    target_scale: np.ndarray | None  # [horizon] classic runs: outputs x scale = log(close_{e+h} / close_e);
    # None for vol_scaled runs, whose unit is sigma_e * sqrt(h) (WindowSet.units)
    sha256: str
    path: Path
    configs: dict[str, Any]  # everything the checkpoint recorded (model / data / train)
    device: torch.device
    sources: list[str] = field(default_factory=list)  # the data it was trained on, as named then
    fingerprints: list[str] = field(default_factory=list)  # ... and as fingerprints of the bars
    _context: MarketContext | None = field(default=None, repr=False)  # built on first use (model_context)

    @property
    def feature_dim(self) -> int:
        """Width of a day's strategy features: d_model per network (a seed ensemble's members side
        by side) plus the horizon's forecasts."""
        networks = len(self.model.members) if isinstance(self.model, PriceEnsemble) else 1
        return networks * self.model_cfg.d_model + self.model_cfg.horizon

    def units(self, ws: WindowSet | PooledWindows, ends: np.ndarray) -> np.ndarray:
        """[n, horizon] the h-day log return of one network output unit at each window end."""
        if self.target_scale is None:
            return ws.units(ends)
        return np.broadcast_to(self.target_scale, (len(ends), len(self.target_scale)))


@dataclass
class QuantileForecast:
    """What the network forecasts at window ends `ends` of one instrument (n of them), in prices and
    in h-day log returns log(close_{e+h} / close_e). A point head has no quantiles: NaN there."""

    levels: tuple[float, ...]  # QUANTILES
    close: np.ndarray  # [n] close_e, the price every horizon is relative to
    sigma: np.ndarray  # [n] causal EWMA daily log-return volatility at e (engine.data.ewma_volatility)
    prices: np.ndarray  # [n, H] the median (point head: the point forecast) closes
    returns: np.ndarray  # [n, H] ... as h-day log returns
    quantile_prices: np.ndarray  # [n, H, Q] closes at each level
    quantile_returns: np.ndarray  # [n, H, Q] h-day log returns at each level

    def take(self, rows: np.ndarray) -> QuantileForecast:
        """The forecasts at these rows only (e.g. the decision days among all the days encoded)."""
        return replace(self, close=self.close[rows], sigma=self.sigma[rows], prices=self.prices[rows],
                       returns=self.returns[rows], quantile_prices=self.quantile_prices[rows],
                       quantile_returns=self.quantile_returns[rows])


@dataclass
class Forecast:
    asof: str  # YYYY-MM-DD: the last bar the forecast reads
    dates: list[str]  # the next 7 business days after asof
    prices: list[float]  # the median (point head: the point forecast)
    quantiles: dict[str, list[float]] = field(default_factory=dict)  # "0.1" -> 7 prices; none: point head
    sigma: float = float("nan")  # EWMA daily volatility at asof
    returns: list[float] = field(default_factory=list)  # the median as h-day log returns (what the network says)
    target: str = "own"  # DataConfig.target: "excess" runs forecast the return over the universe's mean, so
    # their prices are close_asof * exp(excess): where the close goes if the universe's mean return is zero


def is_run_id(source: str | Path) -> bool:
    """A bare name (no folder, no suffix, no such file) is a run id; anything else is a path."""
    path = Path(source)
    return not (path.suffix or path.exists() or any(s in str(source) for s in "/\\"))


def resolve_checkpoint(checkpoint_or_run: str | Path,
                       store: RunStore | None) -> tuple[Path, str | None]:
    """A path to a file, or a run id whose best checkpoint is used; returns (path, recorded sha)."""
    if not is_run_id(checkpoint_or_run):
        return Path(checkpoint_or_run), None
    store = store or RunStore()
    row = store.checkpoint(str(checkpoint_or_run), best=True)
    if row is None:
        raise CheckpointError(f"run {checkpoint_or_run!r} has no best checkpoint in {store.path}")
    return Path(row["path"]), row["sha256"]


def read_checkpoint(checkpoint_or_run: str | Path,
                    store: RunStore | None) -> tuple[Path, dict[str, Any], str]:
    """(path, contents, sha256) of a checkpoint file or a run's best checkpoint, read with
    weights_only; a run's file that changed since the run recorded it is a CheckpointError."""
    path, recorded = resolve_checkpoint(checkpoint_or_run, store)
    ckpt = load_checkpoint(path)
    sha = file_sha256(path)
    if recorded is not None and recorded != sha:
        raise CheckpointError(f"{path}: file changed since the run recorded it (sha256 mismatch)")
    return path, ckpt, sha


def load_price_model(checkpoint_or_run: str | Path, store: RunStore | None = None,
                     device: str | torch.device = "cpu") -> LoadedPriceModel:
    """Rebuild the network a checkpoint (or a run's best checkpoint) was trained as.

    Loading never executes code from the file (weights_only); a file of another model shape or a
    run's checkpoint that changed on disk since it was recorded is a CheckpointError.
    """
    path, ckpt, sha = read_checkpoint(checkpoint_or_run, store)
    if ckpt["extra"].get("ensemble"):
        return _load_ensemble(path, ckpt, sha, device)
    configs = ckpt["configs"] if isinstance(ckpt["configs"], dict) else {}
    if "price" in configs or not configs.get("model"):  # said outright, not left to a default's side effect
        what = "it is a strategy-network checkpoint" if "price" in configs else "it records no model config"
        raise CheckpointError(f"{path}: not a price-network checkpoint ({what})")
    try:
        model_cfg = from_dict(PriceModelConfig, configs["model"])
        data_cfg = from_dict(DataConfig, configs.get("data"))
        scale = None  # vol_scaled: the unit is sigma_e * sqrt(h), computed per window
        if data_cfg.feature_set == "classic":  # its outputs are in units of the train-split std
            scale = np.asarray(ckpt["extra"]["target_scale"], dtype=np.float64)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a price-network checkpoint (missing {exc})") from None
    model = PriceNetwork(model_cfg)
    load_model_state(model, ckpt["model"], path)
    device = torch.device(device)
    return LoadedPriceModel(model=model.to(device).eval(), model_cfg=model_cfg, data_cfg=data_cfg,
                            target_scale=scale, sha256=sha, path=path, configs=ckpt["configs"],
                            device=device, sources=list(ckpt["extra"].get("sources", [])),
                            fingerprints=list(ckpt["extra"].get("fingerprints", [])))


def _load_ensemble(path: Path, ckpt: dict[str, Any], sha: str, device: str | torch.device) -> LoadedPriceModel:
    """A seed ensemble's checkpoint names its members' files and hashes: each is loaded and checked,
    and they must share one unit (target scale) so averaging network outputs averages forecasts."""
    refs = ckpt["extra"]["ensemble"]
    members = [load_price_model(ref["checkpoint"], device=device) for ref in refs]
    for ref, member in zip(refs, members, strict=True):
        if member.sha256 != ref["sha256"]:
            raise CheckpointError(f"{path}: member {ref['checkpoint']} changed since the ensemble "
                                  "was recorded (sha256 mismatch)")
    scales = [m.target_scale for m in members]
    if any((s is None) != (scales[0] is None) or (s is not None and not np.allclose(s, scales[0]))
           for s in scales):
        raise CheckpointError(f"{path}: members forecast in different units (target scales differ)")
    return replace(members[0], model=PriceEnsemble([m.model for m in members]).eval(), sha256=sha,
                   path=path, configs=ckpt["configs"])


def load_bars_as_trained(loaded: LoadedPriceModel, source: str | Path) -> BarTable:
    """The bars of `source` imported as the network's training data were (adjusted or not)."""
    return load_bars(source, adjust=loaded.data_cfg.adjust)


def model_context(loaded: LoadedPriceModel) -> MarketContext | None:
    """The market context the network reads (DataConfig.context), built once from today's bars: the
    equal-weight index of the instruments it trained on (from its period's start), or the index dataset."""
    cfg = loaded.data_cfg
    if cfg.context != "none" and loaded._context is None:
        tables = []
        if cfg.context == "equal_weight":
            tables = [load_bars(s, adjust=cfg.adjust) for s in loaded.sources]
            tables = [replace(t, frame=t.frame.loc[cfg.start:]) for t in tables]
        loaded._context = market_context(cfg.context, tables, cfg.adjust)
    return loaded._context


def model_windows(loaded: LoadedPriceModel, bars: BarTable | WindowSet) -> WindowSet:
    """The bars cut into the windows and horizon the network reads, with its market context (a
    WindowSet passes through)."""
    if isinstance(bars, WindowSet):
        return bars
    return build_windows(bars, loaded.model_cfg.window, loaded.model_cfg.horizon, loaded.data_cfg.feature_set,
                         model_context(loaded))


_OUTPUTS = ("prices", "features", "quantiles", "t_params")  # the PriceOutput fields gathered over batches


@torch.no_grad()
def outputs_progress(loaded: LoadedPriceModel, ws: WindowSet | PooledWindows, ends: np.ndarray,
                     cancel: CancelToken | None = None, message: str = "Encoding windows", batch: int = BATCH,
                     ) -> Generator[Progress, None, PriceOutput]:
    """The network's outputs (network units, float64 on the CPU) for windows ending at day indices
    `ends` (a pool: its [n, 2] (set, end) items), as a job step: Progress(0, len(ends)) first, then
    Progress(done, len(ends)) after each batch, so a long encoding shows how far it is; InterruptedError
    at the first batch after `cancel`."""
    pooled = isinstance(ws, PooledWindows)
    ends = np.asarray(ends, dtype=np.int64)
    first = ws.sets[0] if pooled else ws
    mask = torch.from_numpy(np.asarray(first.mask, dtype=np.float32)).to(loaded.device)
    parts: dict[str, list[torch.Tensor]] = {}
    yield Progress(0, len(ends), message)  # the phase shows at once, not after its first batch
    for i in range(0, len(ends), batch):
        if cancel is not None and cancel.cancelled:
            raise InterruptedError(f"cancelled while {message.lower()}")
        x = torch.from_numpy(ws.inputs(ends[i:i + batch])).to(loaded.device)
        m = torch.from_numpy(ws.masks(ends[i:i + batch])).to(loaded.device) if pooled else mask.expand(len(x), -1)
        out = loaded.model(x, m)
        for name in _OUTPUTS:
            if getattr(out, name) is not None:
                parts.setdefault(name, []).append(getattr(out, name).double().cpu())
        yield Progress(min(i + batch, len(ends)), len(ends), message)
    if not parts:  # no windows: empty outputs of the head's shapes
        probe = loaded.model(torch.zeros(1, first.window, first.n_features, device=loaded.device))
        parts = {name: [getattr(probe, name).double().cpu()[:0]] for name in _OUTPUTS
                 if getattr(probe, name) is not None}
    return PriceOutput(aux_loss=torch.zeros(()), **{name: torch.cat(p) for name, p in parts.items()})


def quantile_progress(loaded: LoadedPriceModel, bars: BarTable | WindowSet, ends: np.ndarray,
                      cancel: CancelToken | None = None, message: str = "Forecasting",
                      ) -> Generator[Progress, None, QuantileForecast]:
    """The median and QUANTILES of the next closes for windows ending at day indices `ends`, as a
    job step: price = close_e * exp(q * unit), unit = sigma_e * sqrt(h) (classic runs: the train-split
    scale of horizon h)."""
    ws = model_windows(loaded, bars)
    ends = np.asarray(ends, dtype=np.int64)
    out = yield from outputs_progress(loaded, ws, ends, cancel, message)
    return quantiles_of(loaded, ws, ends, out)


def quantiles_of(loaded: LoadedPriceModel, ws: WindowSet, ends: np.ndarray, out: PriceOutput) -> QuantileForecast:
    """outputs_progress's outputs at window ends `ends` as prices and log returns: one encoding can
    serve both a forecast and a strategy's inputs."""
    return _in_prices(out, loaded.units(ws, ends), ws.close[ends], ws.sigma[ends])


def _in_prices(out: PriceOutput, units: np.ndarray, close: np.ndarray, sigma: np.ndarray) -> QuantileForecast:
    """Network outputs as h-day log returns (x units) and as closes: close_e * exp(return)."""
    returns = out.prices.numpy() * units
    q_returns = output_quantiles(out, QUANTILES) * units[..., None]
    return QuantileForecast(levels=QUANTILES, close=close, sigma=sigma,
                            prices=close[:, None] * np.exp(returns), returns=returns,
                            quantile_prices=close[:, None, None] * np.exp(q_returns), quantile_returns=q_returns)


def forecast_quantiles(loaded: LoadedPriceModel, bars: BarTable | WindowSet,
                       ends: np.ndarray) -> QuantileForecast:
    """quantile_progress run to its end."""
    return run_to_end(quantile_progress(loaded, bars, ends))


def latest_forecasts(loaded: LoadedPriceModel, sets: list[WindowSet], batch: int = BATCH) -> QuantileForecast:
    """The forecast from the last bar of every instrument (the daily use over a universe): row k is
    sets[k] (windowed as the network reads them: model_windows), their latest windows gathered into
    batches of `batch` on the model's device (a WindowSet always holds one full window)."""
    pool = PooledWindows(sets)
    items = pool.pairs([np.array([len(ws.dates) - 1]) for ws in sets])
    out = run_to_end(outputs_progress(loaded, pool, items, batch=batch))
    return _in_prices(out, loaded.units(pool, items), pool.closes(items), pool.sigmas(items))


def forecast_progress(loaded: LoadedPriceModel, bars: BarTable | WindowSet, ends: np.ndarray,
                      cancel: CancelToken | None = None, message: str = "Forecasting",
                      ) -> Generator[Progress, None, np.ndarray]:
    """[n, horizon] predicted closes (the median; a point head's point) for windows ending at
    day indices `ends`, as a job step."""
    result = yield from quantile_progress(loaded, bars, ends, cancel, message)
    return result.prices


def forecast_many(loaded: LoadedPriceModel, bars: BarTable | WindowSet,
                  ends: np.ndarray) -> np.ndarray:
    """[n, horizon] predicted closes for windows ending at day indices `ends`."""
    return run_to_end(forecast_progress(loaded, bars, ends))


def next_business_days(asof: pd.Timestamp, n: int) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.bdate_range(asof + pd.offsets.Day(1), periods=n)]


def forecast(loaded: LoadedPriceModel, bars: BarTable, asof: str | None = None) -> Forecast:
    """The next closes after `asof` (default: the latest bar); asof falls back to the last trading
    day on or before it. The bars should be imported as in training (load_bars_as_trained)."""
    ws = model_windows(loaded, bars)
    day = len(ws.dates) - 1
    if asof is not None:
        day = int(ws.dates.searchsorted(pd.Timestamp(asof), side="right")) - 1
    first = ws.window - 1
    if day < first:
        raise ValueError(f"{ws.instrument}: no forecast for {asof}: the first date with "
                         f"{ws.window} days of history is {ws.dates[first]:%Y-%m-%d}")
    result = forecast_quantiles(loaded, ws, np.array([day]))
    prices = result.prices[0]
    quantiles = {f"{level:g}": [float(p) for p in result.quantile_prices[0, :, j]]
                 for j, level in enumerate(result.levels) if np.isfinite(result.quantile_prices[0, :, j]).all()}
    return Forecast(asof=f"{ws.dates[day]:%Y-%m-%d}",
                    dates=next_business_days(ws.dates[day], len(prices)),
                    prices=[float(p) for p in prices], quantiles=quantiles, sigma=float(result.sigma[0]),
                    returns=[float(r) for r in result.returns[0]], target=loaded.data_cfg.target)


__all__ = [
    "Forecast",
    "LoadedPriceModel",
    "QuantileForecast",
    "forecast",
    "forecast_many",
    "forecast_progress",
    "forecast_quantiles",
    "is_run_id",
    "latest_forecasts",
    "load_bars_as_trained",
    "load_price_model",
    "model_context",
    "model_windows",
    "next_business_days",
    "outputs_progress",
    "quantile_progress",
    "quantiles_of",
    "read_checkpoint",
    "resolve_checkpoint",
]
