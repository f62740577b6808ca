"""Forecast quality as a job: a price network (or a strategy run's) scored on its test period.

Every figure is in h-day log-return units (engine.evaluation), per instrument and horizon, so a
high-priced instrument does not dominate and instruments can be averaged. The default period is
what the model never trained or selected on: days on or after its recorded `test_start` when the
run has calendar cut dates; for older runs the held-out test split its training carved from an
instrument it trained on (split as training did), and every usable day of an instrument it never
saw. Each instrument reports its period and whether any of it is in-sample.

Beside the model, the volatility baselines (engine.baselines: climatology, EWMA, GARCH(1,1)-t) are
forecast causally on the same days: a model with quantiles gets its pinball skill against each,
band coverage and a PIT histogram; every report carries the baselines' own figures.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from engine.baselines import baseline_quantiles
from engine.config import DataConfig
from engine.data import BarTable, WindowSet
from engine.device import select_device
from engine.evaluation import BAND_LEVELS, cross_section_rows, daily_rank_ic, evaluate_forecasts
from engine.events import CancelToken, Event, Progress
from engine.factors import Panel, factor_scores, lgbm_scores
from engine.forecast import LoadedPriceModel, forecast_quantiles, load_bars_as_trained, model_windows
from engine.jobs.backtest import Source, Training, held_out_start, load_source
from engine.store import RunStore
from engine.training.recipe import recorded_recipe

EVAL_BATCH = 512  # windows per forward pass (and per progress event)
CROSS_SECTION_MIN = 5  # instruments per day a cross-sectional IC needs (engine.evaluation)


@dataclass
class Scored:
    """One instrument's forecasts over its evaluation days (window ends)."""

    name: str
    dataset: str
    dates: pd.DatetimeIndex  # [n] the day each forecast was made from
    pred: np.ndarray  # [n, H] predicted log(close_{e+h} / close_e)
    realised: np.ndarray  # [n, H] the same realised (NaN past the data)
    in_sample: bool
    references: dict[str, np.ndarray]  # baseline quantiles [n, H, Q] at BAND_LEVELS on the same days
    quantiles: np.ndarray | None = None  # [n, H, Q] the model's own, for a distributional network

    @property
    def period(self) -> list[str]:
        return [f"{self.dates[0]:%Y-%m-%d}", f"{self.dates[-1]:%Y-%m-%d}"]


@dataclass
class EvaluationReport:
    """What the job returns; status "cancelled" has no figures."""

    status: str  # "finished" | "cancelled"
    run_id: str | None = None  # None for a checkpoint file
    checkpoint_sha256: str = ""
    datasets: list[str] = field(default_factory=list)
    instruments: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> dataset, period,
    pooled: dict[str, Any] = field(default_factory=dict)  # in_sample, horizons
    cross_section: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "checkpoint_sha256": self.checkpoint_sha256,
                "datasets": self.datasets, "instruments": self.instruments, "pooled": self.pooled,
                "cross_section": self.cross_section}


def default_datasets(model_ref: str, src: Source, store: RunStore) -> list[str]:
    """The datasets the run was trained on (its recipe), or those a checkpoint file names."""
    datasets = recorded_recipe(store, src.run_id).datasets if src.run_id else src.datasets
    if not datasets:
        raise ValueError(f"{model_ref}: the checkpoint names no training data; give --data")
    return list(datasets)


def out_of_sample_start(loaded: LoadedPriceModel, bars: BarTable) -> pd.Timestamp | None:
    """The first day the network neither trained nor selected on for these bars; None when it
    never saw this instrument and the run has no calendar cut dates (all of it is out of sample)."""
    if loaded.data_cfg.test_start:
        return pd.Timestamp(loaded.data_cfg.test_start)
    if bars.fingerprint in loaded.fingerprints:
        cfg = loaded.model_cfg
        return held_out_start(Training(loaded.fingerprints, loaded.data_cfg), bars, cfg.window, cfg.horizon)
    return None


def evaluation_days(ws: WindowSet, boundary: pd.Timestamp | None, start: str | None,
                    end: str | None) -> np.ndarray:
    """Window ends to score: from `start` (default: the boundary, else the first full window) to
    `end`, each with at least its 1-day return realised. ValueError naming the instrument if none."""
    ends = ws.ends[ws.ends < len(ws.dates) - 1]
    dates = ws.dates[ends]
    first = pd.Timestamp(start) if start else boundary
    keep = np.ones(len(ends), dtype=bool)
    if first is not None:
        keep &= dates >= first
    if end:
        keep &= dates <= pd.Timestamp(end)
    if not keep.any():
        span = (f"from {first:%Y-%m-%d}" if first is not None else "") + (f" to {end}" if end else "")
        what = "the model's test period" if start is None and boundary is not None else "the period"
        last = f"{ws.dates[-1]:%Y-%m-%d}" if len(ws.dates) else "no days"
        raise ValueError(f"{ws.instrument}: no days to evaluate in {what} {span.strip()} (its data end "
                         f"{last}; a forecast needs {ws.window} days of history and a realised next "
                         "close); give data reaching into that period or choose --start/--end")
    return ends[keep]


def predicted_returns(loaded: LoadedPriceModel, ws: WindowSet,
                      ends: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """([n, H] predicted h-day log returns (the median; a point head's point), [n, H, Q] their
    quantiles at QUANTILES, None for a point head, which has none)."""
    result = forecast_quantiles(loaded, ws, ends)
    if result.levels != BAND_LEVELS:  # the model's and the baselines' quantiles are scored level by level
        raise ValueError(f"model quantile levels {result.levels} differ from {BAND_LEVELS}")
    quantiles = result.quantile_returns
    return result.returns, (quantiles if np.isfinite(quantiles).any() else None)


def _unique_name(name: str, dataset: str, taken: dict[str, Any]) -> str:
    return name if name not in taken else f"{name} ({dataset})"


def _panel(scored: list[Scored]) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray] | None:
    """(calendar, pred, realised [dates, instruments, H]) on the union of the evaluation days; None when
    there are too few instruments for a cross-section."""
    if len(scored) < CROSS_SECTION_MIN:
        return None
    calendar = scored[0].dates
    for s in scored[1:]:
        calendar = calendar.union(s.dates)
    shape = (len(calendar), len(scored), scored[0].pred.shape[1])
    pred, realised = np.full(shape, np.nan), np.full(shape, np.nan)
    for k, s in enumerate(scored):
        rows = calendar.get_indexer(s.dates)
        pred[rows, k], realised[rows, k] = s.pred, s.realised
    return calendar, pred, realised


def cross_section_baselines(history: Panel, calendar: pd.DatetimeIndex, pred: np.ndarray, realised: np.ndarray,
                            cfg: DataConfig) -> dict[str, Any]:
    """Beside the model's cross-section on the same days and instruments (where it forecast): the simple
    factors, LightGBM on hand-made factors (trained on the run's train days, early-stopped on its
    validation days; null for a run without cut dates) and the model's daily rank IC per horizon.
    history: every instrument's full bars on one calendar (the factors need a year before the first day)."""
    rows = history.dates.get_indexer(calendar)
    forecast = np.isfinite(pred[..., 0])
    on_days = lambda score: np.where(forecast, score[rows], np.nan)
    factors = {name: {"horizons": cross_section_rows(on_days(score), realised, min_names=CROSS_SECTION_MIN)}
               for name, score in factor_scores(history).items()}
    lightgbm = None
    if cfg.train_end and cfg.val_end:
        h, pos = realised.shape[2], np.arange(len(history.dates))
        last_train, last_val = (history.dates.searchsorted(pd.Timestamp(d), side="right") - 1
                                for d in (cfg.train_end, cfg.val_end))
        score = np.isin(pos, rows)
        boosted, rounds = lgbm_scores(history, h, pos + h <= last_train, (pos > last_train + h) & (pos + h <= last_val),
                                      score)
        lightgbm = {"horizons": cross_section_rows(np.where(forecast[..., None], boosted[rows], np.nan), realised,
                                                   min_names=CROSS_SECTION_MIN), "rounds": rounds}
    daily = {"dates": [f"{d:%Y-%m-%d}" for d in calendar],
             "rank_ic": {str(i + 1): [None if not np.isfinite(v) else float(v)
                                      for v in daily_rank_ic(pred[..., i], realised[..., i], CROSS_SECTION_MIN)]
                         for i in range(realised.shape[2])}}
    return {"factors": factors, "lightgbm": lightgbm, "daily": daily}


def evaluate_job(model_ref: str, data: list[str] | None = None, *, store: RunStore,
                 start: str | None = None, end: str | None = None, device: str | None = None,
                 cancel: CancelToken | None = None) -> Generator[Event, None, EvaluationReport]:
    """Score `model_ref` (a run id or a checkpoint file; a strategy run's price network) on each
    dataset (default: those it trained on). Bad input raises ValueError before any forecast."""
    yield Progress(0, 1, "loading the model")
    src = load_source(model_ref, store)
    loaded = src.price
    if device is not None:
        loaded.device = select_device(device)
        loaded.model.to(loaded.device)
    datasets = list(data) if data else default_datasets(model_ref, src, store)
    work = []  # (dataset, windows, days, in_sample)
    volumes = []  # each instrument's volume (NaN where the file has none), for LightGBM's factors
    for dataset in datasets:
        bars = load_bars_as_trained(loaded, dataset)
        ws = model_windows(loaded, bars)
        boundary = out_of_sample_start(loaded, bars)
        days = evaluation_days(ws, boundary, start, end)
        work.append((dataset, ws, days, boundary is not None and ws.dates[days[0]] < boundary))
        volumes.append(bars.frame["volume"].to_numpy(dtype=np.float64))
    total, done = sum(len(days) for _, _, days, _ in work), 0
    scored: list[Scored] = []
    for dataset, ws, days, in_sample in work:
        chunks, q_chunks = [], []
        for i in range(0, len(days), EVAL_BATCH):
            if cancel is not None and cancel.cancelled:
                return EvaluationReport("cancelled", src.run_id, src.price.sha256, datasets)
            pred, quantiles = predicted_returns(loaded, ws, days[i:i + EVAL_BATCH])
            chunks.append(pred)
            q_chunks.append(quantiles)
            done += len(pred)
            yield Progress(done, total, f"forecasting {ws.instrument}")
        name = _unique_name(ws.instrument, dataset, {s.name: s for s in scored})
        yield Progress(done, total, f"volatility baselines of {ws.instrument}")
        references = baseline_quantiles(ws.close, ws.dates, days, BAND_LEVELS, ws.horizon)
        model_q = None if any(q is None for q in q_chunks) else np.concatenate(q_chunks)
        scored.append(Scored(name, dataset, ws.dates[days], np.concatenate(chunks), ws.targets(days),
                             bool(in_sample), references, model_q))
    panel = _panel(scored)
    figures = evaluate_forecasts({s.name: (s.pred, s.realised) for s in scored}, panel and panel[1:],
                                 min_names=CROSS_SECTION_MIN, quantiles={s.name: s.quantiles for s in scored},
                                 references={s.name: s.references for s in scored}, levels=BAND_LEVELS)
    if panel is not None:
        yield Progress(total, total, "cross-sectional baselines: factors and LightGBM")
        history = Panel.from_series([s.name for s in scored], [ws.dates for _, ws, _, _ in work],
                                    [ws.close for _, ws, _, _ in work], volumes)
        figures["cross_section"].update(cross_section_baselines(history, *panel, loaded.data_cfg))
    instruments = {s.name: {"dataset": s.dataset, "period": s.period, "in_sample": s.in_sample,
                            **figures["instruments"][s.name]} for s in scored}
    return EvaluationReport("finished", src.run_id, src.price.sha256, datasets, instruments,
                            figures["pooled"], figures["cross_section"])


__all__ = [
    "EVAL_BATCH",
    "EvaluationReport",
    "Scored",
    "cross_section_baselines",
    "default_datasets",
    "evaluate_job",
    "evaluation_days",
    "out_of_sample_start",
    "predicted_returns",
]
