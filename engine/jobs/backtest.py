"""A backtest as a job: a trained run (or a checkpoint file) on one dataset, recorded in the history.

A strategy run trades its own deterministic positions; a price run trades "follow the forecast".
The default period is the days on or after the model's test start (its calendar cut dates), for
any instrument, seen or unseen; an earlier --start is allowed and the backtest is marked in-sample.
Legacy models (recorded before calendar splits) keep the old default: the held-out tail of an
instrument the model trained on, the whole usable history of one it never saw.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from engine.backtest.run import BacktestResult, backtest_progress, deflate, forecast_positions
from engine.backtest.signals import export_signals
from engine.backtest.stats import recorded_sharpes
from engine.checkpoint import file_sha256
from engine.config import HORIZON, BacktestConfig, DataConfig, to_dict
from engine.data import (
    BarTable,
    CutDates,
    WindowSet,
    build_windows,
    chronological_split,
    days_after,
    load_bars,
    recorded_cut_dates,
)
from engine.events import CancelToken, Event, Progress
from engine.forecast import (
    LoadedPriceModel,
    is_run_id,
    load_price_model,
    model_windows,
    outputs_progress,
    quantile_progress,
    quantiles_of,
)
from engine.policy import (
    LoadedStrategy,
    day_rows,
    load_strategy_model,
    model_kind,
    positions_from_rows,
    walked_days,
)
from engine.store import RunStore

PRED_COLUMNS = [f"pred_{h}" for h in range(1, HORIZON + 1)]
BAND_LEVELS = {"q10": 0.1, "q90": 0.9}  # the quantile prices a backtest frame (and the signals CSV) carries
BAND_COLUMNS = [f"{name}_{h}" for name in BAND_LEVELS for h in range(1, HORIZON + 1)]
# The analytic baseline's 1-day distribution: the median log return and a normal-equivalent sigma
# from the model's own 80 % band, (q90 - q10) / (2 z_0.9). The band's width rather than the EWMA
# sigma, so the baseline trades the model's view of risk as well as of return; NaN for a point head.
DIST_COLUMNS = ["median", "sigma"]
Z90 = 1.2815515655446004  # the standard normal's 90 % quantile


@dataclass
class Training:
    """One stage's training data: the bars' fingerprints and the date range and split it used."""

    fingerprints: list[str]
    data_cfg: DataConfig


@dataclass
class Source:
    """What is being backtested: a strategy (its positions) or a price network (follow-forecast)."""

    kind: str  # "strategy" | "price"
    run_id: str | None
    price: LoadedPriceModel
    strategy: LoadedStrategy | None
    data_cfg: DataConfig
    datasets: list[str]  # the data it was trained on, as named then (walk-forward retrains on it)
    trainings: list[Training]  # every stage's data: price network, and strategy when there is one

    @property
    def sha256(self) -> str:
        return (self.strategy or self.price).sha256

    @property
    def first_day(self) -> int:
        """Index of the first bar a decision can be made on: a full window, plus the strategy's walk."""
        walk = self.data_cfg.seq_len - 1 if self.strategy else 0
        return self.price.model_cfg.window - 1 + walk

    @property
    def cuts(self) -> CutDates | None:
        """Stage 1's calendar cut dates (stage 2 inherits them); None for a legacy model."""
        return recorded_cut_dates(self.price.data_cfg)

    def trained_on(self, bars: BarTable) -> list[Training]:
        """The stages whose training data were these bars (by content, whatever the file's name)."""
        return [t for t in self.trainings if bars.fingerprint in t.fingerprints]


def load_source(model_ref: str, store: RunStore) -> Source:
    """A run id (its best checkpoint) or a checkpoint path; never executes code from the file."""
    run_id = model_ref if is_run_id(model_ref) else None
    kind = model_kind(model_ref, store)
    if kind not in ("price", "strategy"):
        raise ValueError(f"run {model_ref!r} is a {kind} run: backtest a price or strategy run")
    strategy = load_strategy_model(model_ref, store) if kind == "strategy" else None
    price = strategy.price if strategy else load_price_model(model_ref, store)
    trainings = [Training(price.fingerprints, price.data_cfg)]
    if strategy:
        trainings.append(Training(strategy.fingerprints, strategy.data_cfg))
    return Source(kind, run_id, price, strategy, (strategy or price).data_cfg,
                  (strategy or price).sources, trainings)


def held_out_start(training: Training, bars: BarTable, window: int, horizon: int) -> pd.Timestamp:
    """Legacy models only: first day of the per-instrument test split a stage carved from these
    bars (split exactly as in training)."""
    cfg = training.data_cfg
    trained = build_windows(replace(bars, frame=bars.frame.loc[cfg.start:cfg.end]), window, horizon)
    test = chronological_split(trained, cfg.val_fraction, cfg.test_fraction, embargo=horizon).test
    return trained.dates[int(test[0])] if len(test) else bars.frame.index[-1] + pd.Timedelta(days=1)


def default_period(src: Source, bars: BarTable) -> tuple[str, str]:
    """Days on or after the model's test start, for any instrument (ValueError naming it when it
    has none: never a fall-back to in-sample days). Legacy models: the held-out test span when any
    stage trained on these bars (the latest of their test starts), else the whole usable history."""
    window, horizon = src.price.model_cfg.window, src.price.model_cfg.horizon
    dates = bars.frame.index
    start = dates[min(src.first_day, len(dates) - 1)]
    if src.cuts is not None:
        days = days_after(build_windows(bars, window, horizon), src.cuts.test_start)
        return f"{max(start, dates[days[0]]):%Y-%m-%d}", f"{dates[-1]:%Y-%m-%d}"
    for training in src.trained_on(bars):
        start = max(start, held_out_start(training, bars, window, horizon))
    if start > dates[-1]:
        raise ValueError(f"{bars.instrument}: the model trained on all of it (no held-out test "
                         "days); choose a period, knowing it is in-sample")
    return f"{start:%Y-%m-%d}", f"{dates[-1]:%Y-%m-%d}"


def overlaps_training(src: Source, bars: BarTable, start: str) -> bool:
    """True when a backtest from `start` is in-sample: before the model's test start, for any
    instrument (legacy models: before the held-out tail of bars a stage trained on). The user
    gets a warning and the backtest is marked, not refused."""
    if src.cuts is not None:
        return pd.Timestamp(start) < pd.Timestamp(src.cuts.test_start)
    if not src.trained_on(bars):
        return False
    window, horizon = src.price.model_cfg.window, src.price.model_cfg.horizon
    return any(pd.Timestamp(start) < held_out_start(t, bars, window, horizon)
               for t in src.trained_on(bars))


def decision_days(ws: WindowSet, start: str, end: str, first: int) -> np.ndarray:
    days = np.arange(len(ws.dates))
    inside = (ws.dates >= pd.Timestamp(start)) & (ws.dates <= pd.Timestamp(end)) & (days >= first)
    return days[inside]


def backtest_frame_json(result: BacktestResult) -> str:
    return result.frame.reset_index().to_json(orient="split", date_format="iso", double_precision=15)


def load_backtest_frame(record: dict) -> pd.DataFrame:
    """The daily frame a backtest record holds (as backtest_progress returned it)."""
    data = record["frame_json"]
    if isinstance(data, str):
        data = json.loads(data)
    frame = pd.DataFrame(data["data"], columns=data["columns"])
    frame["date"] = pd.to_datetime(frame["date"]).dt.tz_localize(None)
    frame["regime"] = frame["regime"].fillna("").astype(str)
    return frame.set_index("date")


def positions_for(src: Source, ws: WindowSet, days: np.ndarray, cancel: CancelToken | None = None,
                  ) -> Generator[Progress, None, tuple[pd.Series, pd.DataFrame]]:
    """What `src` decides on decision days of one instrument: positions 0..10 and the 7
    predicted closes (PRED_COLUMNS, the median) then their 10 % and 90 % quantiles (BAND_COLUMNS)
    and the 1-day distribution (DIST_COLUMNS; both NaN for a point head), indexed by date. A job
    step: Progress per batch of windows encoded, InterruptedError once `cancel` is set. A strategy's
    walked days are encoded once, for its inputs and the forecasts alike."""
    dates = ws.dates[days]
    message = f"Forecasting {ws.instrument}"
    if src.strategy is None:
        forecasts = yield from quantile_progress(src.price, ws, days, cancel, message)
    else:  # the decision days are among the walked ones (each walk ends on its day)
        ends = np.intersect1d(ws.ends, walked_days(src.strategy, ws, days))
        encoded = yield from outputs_progress(src.price, ws, ends, cancel, message)
        forecasts = quantiles_of(src.price, ws, ends, encoded).take(np.searchsorted(ends, days))
    lo, hi = (forecasts.levels.index(level) for level in BAND_LEVELS.values())
    bands = [forecasts.quantile_prices[..., i] for i in (lo, hi)]
    day1 = forecasts.quantile_returns[:, 0]
    sigma = (day1[:, hi] - day1[:, lo]) / (2 * Z90)
    predicted = pd.DataFrame(np.concatenate([forecasts.prices, *bands, forecasts.returns[:, :1], sigma[:, None]],
                                            axis=1), index=dates, columns=PRED_COLUMNS + BAND_COLUMNS + DIST_COLUMNS)
    if src.strategy is not None:
        raw = day_rows(src.price, ws, ends, encoded, src.strategy.model_cfg.inputs)
        return pd.Series(positions_from_rows(src.strategy, raw, ws, days), index=dates), predicted
    close = pd.Series(ws.close, index=ws.dates)
    return forecast_positions(close, predicted).loc[dates], predicted


def run_source(src: Source, bars: BarTable, cfg: BacktestConfig, data: str,
               cancel: CancelToken | None = None) -> Generator[Progress, None, BacktestResult]:
    """Positions and forecasts of `src` over cfg's period (default: default_period), as a job step:
    InterruptedError once `cancel` is set."""
    ws = model_windows(src.price, bars)
    first = src.first_day
    if first + 1 >= len(ws.dates):
        walk = f" + {src.data_cfg.seq_len}-day walk" if src.strategy else ""
        raise ValueError(f"{data}: {len(ws.dates)} bars; a backtest needs more than {first + 1} "
                         f"({ws.window}-day window{walk})")
    if not (cfg.start and cfg.end):
        start, end = default_period(src, bars)
        cfg = replace(cfg, start=cfg.start or start, end=cfg.end or end)
    days = decision_days(ws, cfg.start, cfg.end, first)
    if len(days) < 2:
        raise ValueError(f"{data}: fewer than two decision days between {cfg.start} and {cfg.end} "
                         f"(the first day with enough history is {ws.dates[first]:%Y-%m-%d})")
    positions, predicted = yield from positions_for(src, ws, days, cancel)
    close = pd.Series(ws.close, index=ws.dates)
    result = yield from backtest_progress(close, positions, cfg, predicted=predicted, opens=bars.frame["open"],
                                          instrument=bars.instrument, distribution=distribution_of(predicted))
    return with_bands(result, predicted)


def distribution_of(predicted: pd.DataFrame) -> pd.DataFrame | None:
    """positions_for's 1-day median and sigma for the analytic baseline; None for a point head."""
    dist = predicted[DIST_COLUMNS]
    return dist if np.isfinite(dist["sigma"].to_numpy()).any() else None


def with_bands(result: BacktestResult, predicted: pd.DataFrame) -> BacktestResult:
    """The result with positions_for's quantile columns added to its daily frame (NaN where none)."""
    result.frame[BAND_COLUMNS] = predicted[BAND_COLUMNS].reindex(result.frame.index).to_numpy()
    return result


@dataclass
class BacktestRecord:
    """What a backtest job returns: the backtest as recorded in the history, with its result.

    status "finished" has all fields; "cancelled" / "failed" (a walk-forward fold that did not
    finish) have no backtest_id and no result.
    """

    status: str
    backtest_id: str | None = None
    run_id: str | None = None  # the run backtested; None for a checkpoint file
    dataset: str = ""
    config: dict = field(default_factory=dict)  # as recorded: period, model_ref ("source"), folds
    result: BacktestResult | None = None
    error: str | None = None


def record_backtest(store: RunStore, src: Source, model_ref: str, data: str, bars: BarTable,
                    cfg: BacktestConfig, result: BacktestResult, **extra: object) -> BacktestRecord:
    """Record a finished backtest of `src` on `data` (extra: more config keys, e.g. the folds)."""
    frame = result.frame
    deflate(result, recorded_sharpes(store, bars.fingerprint), cfg.risk_free)  # runs tried on these bars
    config = {**to_dict(cfg), "fingerprint": bars.fingerprint, "start": f"{frame.index[0]:%Y-%m-%d}",
              "end": f"{frame.index[-1]:%Y-%m-%d}", "source": model_ref, "kind": src.kind,
              "instrument": bars.instrument, "checkpoint_sha256": src.sha256,
              "trained_on": src.datasets, **extra}
    config.setdefault("in_sample", overlaps_training(src, bars, config["start"]))
    metrics = {**result.metrics, "per_regime": result.per_regime}
    backtest_id = store.add_backtest(src.run_id, dataset=data, config=config, metrics=metrics,
                                     baselines=result.baselines,
                                     frame_json=backtest_frame_json(result))
    return BacktestRecord("finished", backtest_id, src.run_id, data, config, result)


def backtest_job(model_ref: str, data: str, *, cfg: BacktestConfig, store: RunStore,
                 cancel: CancelToken | None = None) -> Generator[Event, None, BacktestRecord]:
    """Backtest `model_ref` (a run id or a checkpoint file) on `data` and return the record; bad
    input raises before anything is recorded."""
    yield Progress(0, 2, "Loading the model and the data")
    src = load_source(model_ref, store)
    yield Progress(1, 2, "Loading the model and the data")
    bars = load_bars(data, adjust=src.data_cfg.adjust)
    yield Progress(2, 2, "Loading the model and the data")
    try:
        result = yield from run_source(src, bars, cfg, data, cancel)
    except InterruptedError:
        return BacktestRecord("cancelled", run_id=src.run_id, dataset=data)
    yield Progress(0, 1, "Recording the backtest")
    record = record_backtest(store, src, str(model_ref), data, bars, cfg, result)
    yield Progress(1, 1, "Recorded")
    return record


def export_backtest_signals(store: RunStore, backtest_id: str, path: str | Path) -> tuple[Path, int]:
    """Write a recorded backtest's signals CSV atomically and record the export in the history."""
    record = store.get_backtest(backtest_id)
    if record is None:
        raise ValueError(f"no backtest {backtest_id!r} in {store.path}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{path}: folder {path.parent} does not exist")
    config = record["config"]
    rows = export_signals(load_backtest_frame(record), path, instrument=config["instrument"],
                          run_id=record["run_id"] or "", checkpoint_sha=config["checkpoint_sha256"])
    store.add_export(backtest_id, path, rows, file_sha256(path))
    return path, rows


__all__ = [
    "BAND_COLUMNS",
    "DIST_COLUMNS",
    "PRED_COLUMNS",
    "BacktestRecord",
    "Source",
    "Training",
    "backtest_job",
    "default_period",
    "distribution_of",
    "export_backtest_signals",
    "held_out_start",
    "load_backtest_frame",
    "load_source",
    "overlaps_training",
    "positions_for",
    "record_backtest",
    "run_source",
    "with_bands",
]
