"""Why this forecast, why this position: attention, integrated gradients and the regime vote for one day.

For the window ending on a picked day: the price network's attention from the last position to every
day of the window (per layer and head, read without changing the forward pass), attention rollout
across layers, integrated gradients of the forecast median at a horizon with respect to the window's
inputs (day x feature), and, for a strategy run, of the chosen position's logit with respect to the
strategy network's inputs over its walk (day x cached feature). Baselines are stated with each result.

Integrated gradients use Gauss-Legendre nodes on the straight path from the baseline, graded towards
it (alpha = s^3): a network's output bends most where the inputs are near the flat baseline and its
normalisations amplify them, so nodes are spent there. On the days measured 24 graded nodes meet
completeness (the attributions sum to output minus baseline output within 1 % of the larger of that
change and the attributions' size) where 64 even ones were needed; nodes double only when the gap is
still larger. Every path point costs a forward and a backward pass: the node count is the price of an
explanation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from engine.config import FEATURE_NAMES
from engine.data import WindowSet
from engine.events import CancelToken, Progress, run_to_end
from engine.forecast import LoadedPriceModel, load_bars_as_trained, load_price_model, model_windows
from engine.models.mla import attention_readout
from engine.policy import (
    LoadedStrategy,
    day_features,
    load_strategy_model,
    model_kind,
    previous_positions,
    standardised_inputs,
    strategy_input_names,
)
from engine.regime import DEFAULT_THRESHOLDS, REGIME_NAMES, VOTERS, causal_periods, vote, voters
from engine.store import RunStore

IG_NODES = 24  # Gauss-Legendre nodes to start with
IG_GRADING = 3  # path points alpha = s**IG_GRADING for Gauss-Legendre s: denser near the baseline
IG_MAX_NODES = 256
COMPLETENESS = 0.01  # attributions must sum to output - baseline output within this share (of the larger
# of that change and the attributions' total magnitude)
IG_CHUNK = 32  # path points per forward/backward pass (bounds memory on large presets)
REGIME_LOOKBACK = 20  # as the backtests' causal labels
BLOCKS = ((0, 5, "the last 5 days'"), (5, 20, "days 6-20 back's"), (20, 60, "days 21-60 back's"),
          (60, None, "the older days'"))  # spans back from the picked day, for the words
TOP = 6
CALENDAR = ("time", "day_sin", "day_cos")  # the calendar is not something the market did
FLAT_BASELINE = ("a flat market on the same calendar: every price at the picked day's close, no change, "
                 "no range, volume/amount/turnover/trades at their trailing median, calendar features kept")
MEAN_BASELINE = "the training mean of every strategy input on every day of the walk (0 after normalising)"


def integrated_gradients(fn: Callable[[Tensor], Tensor], x: Tensor, baseline: Tensor, nodes: int = IG_NODES,
                         tolerance: float = COMPLETENESS,
                         max_nodes: int = IG_MAX_NODES) -> tuple[Tensor, float, float, int, float]:
    """Attributions of the scalar fn (a batch [n, ...] -> [n]) at x against baseline (both [...]):
    (attributions like x, fn(x), fn(baseline), nodes used, completeness gap). The gap is |sum - change| as
    a share of the larger of the change and the attributions' total magnitude: on a day whose output
    barely moves from the baseline's, a share of the change alone would demand nodes for noise no heat
    map shows."""
    with torch.no_grad():
        out, base = fn(torch.stack([x, baseline])).double().tolist()
    while True:
        points, weights = np.polynomial.legendre.leggauss(nodes)
        s = (points + 1) / 2  # on [0, 1]; alpha = s^k and d(alpha) = k s^(k-1) ds
        alphas = torch.as_tensor(s ** IG_GRADING, dtype=x.dtype, device=x.device)
        weights = torch.as_tensor(weights / 2 * IG_GRADING * s ** (IG_GRADING - 1), dtype=x.dtype, device=x.device)
        grad_sum = torch.zeros_like(x)
        for i in range(0, nodes, IG_CHUNK):
            a = alphas[i:i + IG_CHUNK].view(-1, *([1] * x.dim()))
            path = (baseline + a * (x - baseline)).requires_grad_(True)
            (grads,) = torch.autograd.grad(fn(path).sum(), path)
            grad_sum += torch.tensordot(weights[i:i + IG_CHUNK], grads, dims=1)
        attributions = ((x - baseline) * grad_sum).detach()
        size = max(abs(out - base), float(attributions.double().abs().sum()), 1e-12)
        gap = abs(float(attributions.double().sum()) - (out - base)) / size
        if gap <= tolerance or nodes >= max_nodes:
            return attributions, out, base, nodes, gap
        nodes *= 2


@contextmanager
def inputs_only(module: torch.nn.Module) -> Iterator[None]:
    """Gradients flow to the inputs only while inside: the backward pass skips every weight gradient
    (and the forward keeps no activations for them), about a quarter of each path point's cost."""
    wanted = [p for p in module.parameters() if p.requires_grad]
    for p in wanted:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in wanted:
            p.requires_grad_(True)


def attention_rollout(maps: np.ndarray) -> np.ndarray:
    """Abnar & Zuidema's rollout of head-averaged maps [L, T, T]: the last position's share of each
    input day once every layer's residual (0.5 I + 0.5 A) is chained; [T], sums to 1."""
    eye = np.eye(maps.shape[-1])
    row = eye[-1]
    for layer in maps[::-1]:
        row = row @ (0.5 * layer + 0.5 * eye)
    return row


@dataclass
class Attribution:
    """Integrated gradients of one scalar output over a [days, features] input."""

    target: str  # what was attributed, in words
    units: str
    features: list[str]
    dates: list[str]  # one per row of values
    values: np.ndarray  # [days, features]
    output: float
    baseline_output: float
    baseline: str  # the baseline input, in words
    nodes: int
    completeness_gap: float  # |sum(values) - (output - baseline_output)| / max(|that change|, sum|values|)
    scale: float = 1.0  # words show values x scale (e.g. network units -> log return)
    percent: bool = False  # ... as percentages

    def amount(self, value: float) -> str:
        value *= self.scale
        return f"{abs(value):.2%}" if self.percent else f"{abs(value):.3g}"

    def top(self, k: int = TOP) -> list[dict[str, Any]]:
        """The largest contributions of a feature over a block of days back from the picked day, in words."""
        back = self.values[::-1]  # row 0: the picked day
        rows = []
        for first, last, words in BLOCKS:
            block = back[first:last].sum(axis=0)
            if first < len(back):
                rows += [(words, name, float(v)) for name, v in zip(self.features, block)]
        rows.sort(key=lambda r: -abs(r[2]))
        return [{"days": words.split("'")[0], "feature": name, "value": value,
                 "text": f"{words} {name} pushed {self.target} {'up' if value > 0 else 'down'} by {self.amount(value)}"}
                for words, name, value in rows[:k] if value != 0]

    def top_days(self, k: int = 5) -> list[dict[str, Any]]:
        """Days whose features together moved the output most."""
        per_day = self.values.sum(axis=1)
        order = np.argsort(-np.abs(per_day))[:k]
        return [{"date": self.dates[i], "value": float(per_day[i])} for i in order]

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "units": self.units, "features": self.features, "dates": self.dates,
                "values": self.values.tolist(), "output": self.output, "baseline_output": self.baseline_output,
                "baseline": self.baseline, "nodes": self.nodes, "completeness_gap": self.completeness_gap,
                "top": self.top(), "top_days": self.top_days()}


@dataclass
class Explanation:
    """Everything the explain panel and `python -m engine explain` show for one day."""

    asof: str
    instrument: str
    kind: str  # "price" | "strategy"
    horizon: int
    dates: list[str]  # the window's days, oldest first
    close: np.ndarray  # [window] closes of those days
    attention: np.ndarray  # [layers, heads, window]: the last position's attention probabilities
    rollout: np.ndarray  # [window]
    forecast: Attribution
    forecast_return: float  # the median h-day log return forecast
    regime: dict[str, Any] | None  # the causal label of the day and each voter's statistic and vote
    position: int | None = None  # the strategy's chosen position 0..10 (strategy runs)
    strategy: Attribution | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        top = self.forecast.top() + (self.strategy.top() if self.strategy else [])
        return {"asof": self.asof, "instrument": self.instrument, "kind": self.kind, "horizon": self.horizon,
                "dates": self.dates, "attention": self.attention.mean(axis=1).tolist(),
                "attention_heads": self.attention.tolist(), "rollout": self.rollout.tolist(),
                "attribution": {"features": self.forecast.features, "values": self.forecast.values.tolist()},
                "output": self.forecast.output, "baseline_output": self.forecast.baseline_output,
                "forecast": self.forecast.to_json(), "forecast_return": self.forecast_return,
                "position": self.position, "strategy": self.strategy.to_json() if self.strategy else None,
                "regime": self.regime, "top": [t["text"] for t in top]}


def input_names(n_features: int) -> list[str]:
    """Names of the price network's inputs (numbered when the run used another feature set)."""
    if len(FEATURE_NAMES) == n_features:
        return list(FEATURE_NAMES)
    return [f"feature {i + 1}" for i in range(n_features)]


def window_day(ws: WindowSet, date: str | None, first: int) -> int:
    """The last trading day on or before date (None: the latest); ValueError when it has too little history."""
    day = len(ws.dates) - 1 if date is None else int(ws.dates.searchsorted(pd.Timestamp(date), side="right")) - 1
    if day < first:
        raise ValueError(f"{ws.instrument}: nothing to explain on {date}: the first day with enough history "
                         f"is {ws.dates[min(first, len(ws.dates) - 1)]:%Y-%m-%d}")
    return day


def explain_regime(close: np.ndarray, lookback: int = REGIME_LOOKBACK) -> dict[str, Any] | None:
    """The causal regime of the last day of close (closes up to it only): each voter's statistic,
    its bounds and its vote, and the majority; None with too little history."""
    if len(close) <= lookback:
        return None
    periods, low, high = causal_periods(close, lookback)
    ours = periods[-1:], DEFAULT_THRESHOLDS, (low[-1:], high[-1:])
    if not (np.isfinite(periods[-1]).all() and np.isfinite(low[-1]) and np.isfinite(high[-1])):
        return None
    names = {1: "bull", 0: "sideways", -1: "bear"}
    what = {"simple": f"mean daily return over {lookback} days vs +-{DEFAULT_THRESHOLDS.simple_t} standard errors",
            "technical": f"last {DEFAULT_THRESHOLDS.short_days} days' mean minus the {lookback}-day mean "
                         f"vs +-{DEFAULT_THRESHOLDS.technical_margin} daily stds",
            "adaptive": f"mean daily return over {lookback} days vs the {DEFAULT_THRESHOLDS.adaptive_low:.0%}/"
                        f"{DEFAULT_THRESHOLDS.adaptive_high:.0%} quantiles of earlier periods' means"}
    found = voters(*ours)
    rows = [{"voter": name, "statistic": float(found[name][0][0]), "low": float(found[name][1][0]),
             "high": float(found[name][2][0]), "vote": names[int(found[name][3][0])], "rule": what[name]}
            for name in VOTERS]
    return {"label": REGIME_NAMES[int(vote(*ours)[0])], "lookback": lookback, "voters": rows}


def flat_baseline(x: Tensor, names: list[str]) -> Tensor:
    """FLAT_BASELINE for a window x [T, F]: zeros but the calendar columns. Keeping the calendar also keeps
    the path off the all-zero input, where the normalised encoder is singular (its output jumps there)."""
    baseline = torch.zeros_like(x)
    calendar = [names.index(k) for k in CALENDAR if k in names]
    baseline[:, calendar] = x[:, calendar]
    return baseline


def log_return_unit(price: LoadedPriceModel, ws: WindowSet, day: int, horizon: int) -> float:
    """One network unit of the h-day forecast in log return at this window: LoadedPriceModel.units where
    the loaded model has it (vol-scaled runs: sigma_e * sqrt(h)), else the run's fixed target scale."""
    units = getattr(price, "units", None)  # the quantile-head change adds it; runs before it have a scale
    if units is not None:
        return float(units(ws, np.array([day]))[0, horizon - 1])
    return float(price.target_scale[horizon - 1])


def _price_attribution(price: LoadedPriceModel, ws: WindowSet, day: int, horizon: int) -> Attribution:
    x = torch.from_numpy(ws.inputs(np.array([day]))[0]).to(price.device)
    mask = torch.from_numpy(np.asarray(ws.mask, dtype=np.float32)).to(price.device)
    names = input_names(x.shape[-1])
    baseline = flat_baseline(x, names)
    with inputs_only(price.model):
        values, out, base, nodes, gap = integrated_gradients(
            lambda z: price.model(z, mask.expand(len(z), -1)).prices[:, horizon - 1], x, baseline)
    return Attribution(f"the {horizon}-day median", "network units (x target scale = log return)", names,
                       [f"{d:%Y-%m-%d}" for d in ws.dates[day - ws.window + 1:day + 1]],
                       values.double().cpu().numpy(), out, base, FLAT_BASELINE, nodes, gap,
                       scale=log_return_unit(price, ws, day, horizon), percent=True)


def _strategy_attribution(strategy: LoadedStrategy, ws: WindowSet, day: int) -> tuple[int, Attribution]:
    seq = strategy.data_cfg.seq_len
    days = day - np.arange(seq - 1, -1, -1)
    before = days - seq  # a warm-starting network walks on from the position it picked the day before
    read = np.concatenate([before[before >= 0], days]) if strategy.model_cfg.warm_start else days
    inputs = standardised_inputs(strategy, day_features(strategy.price, ws, None, "", read,
                                                        strategy.model_cfg.inputs), ws)
    x = torch.from_numpy(inputs[days]).to(strategy.price.device)
    initial = None
    if strategy.model_cfg.warm_start:
        usable = torch.tensor([bool(before[0] >= 0 and np.isfinite(inputs[before.clip(0)]).all())],
                              device=x.device)
        initial = previous_positions(strategy.model, torch.from_numpy(inputs[before.clip(0)][None]).to(x.device),
                                     usable)
    with torch.no_grad():
        walk = strategy.model(x[None], deterministic=True, initial=initial).logits[0].argmax(dim=-1)  # (S,)
    chosen = int(walk[-1])
    held = walk.to(x.dtype)[None]
    names = strategy_input_names(strategy.model_cfg, strategy.price.model_cfg.horizon)
    with inputs_only(strategy.model):
        values, out, base, nodes, gap = integrated_gradients(
            lambda z: strategy.model(z, deterministic=True, held=held.expand(len(z), -1),
                                     initial=None if initial is None else initial.expand(len(z))
                                     ).logits[:, -1, chosen],
            x, torch.zeros_like(x))
    return chosen, Attribution(
        f"the logit of position {chosen}", "logit (the walk's earlier positions held as chosen)", names,
        [f"{d:%Y-%m-%d}" for d in ws.dates[days]], values.double().cpu().numpy(), out, base,
        MEAN_BASELINE, nodes, gap)


def _attention(price: LoadedPriceModel, ws: WindowSet, day: int) -> tuple[np.ndarray, np.ndarray]:
    """[L, H, T] last-position attention and its [T] rollout."""
    x = torch.from_numpy(ws.inputs(np.array([day]))).to(price.device)
    mask = torch.from_numpy(np.asarray(ws.mask, dtype=np.float32)).to(price.device)[None]
    with torch.no_grad(), attention_readout(price.model) as maps:
        price.model(x, mask)
    full = torch.stack([m[0] for m in maps]).double().cpu().numpy()  # (L, H, T, T)
    return full[:, :, -1], attention_rollout(full.mean(axis=1))


def explain_job(model_ref: str | LoadedPriceModel | LoadedStrategy, dataset: str, date: str | None,
                horizon: int, store: RunStore | None = None, device: str = "cpu",
                cancel: CancelToken | None = None) -> Generator[Progress, None, Explanation | None]:
    """Explain the window ending on `date` (the last trading day on or before it); returns None when
    cancelled. model_ref: a price or strategy run id, a checkpoint file, or a loaded model."""
    cancel = cancel or CancelToken()
    clock = time.perf_counter()
    yield Progress(0, 4, "loading the model and data")
    if isinstance(model_ref, (LoadedPriceModel, LoadedStrategy)):
        loaded = model_ref
    elif model_kind(model_ref, store) == "strategy":
        loaded = load_strategy_model(model_ref, store, device)
    else:
        loaded = load_price_model(model_ref, store, device)
    strategy = loaded if isinstance(loaded, LoadedStrategy) else None
    price = strategy.price if strategy else loaded
    if not 1 <= horizon <= price.model_cfg.horizon:
        raise ValueError(f"horizon {horizon} is outside 1..{price.model_cfg.horizon}")
    ws = model_windows(price, load_bars_as_trained(price, dataset))
    day = window_day(ws, date, ws.window - 1 + (strategy.data_cfg.seq_len - 1 if strategy else 0))
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    lap("load")
    yield Progress(1, 4, "attention")
    attention, rollout = _attention(price, ws, day)
    lap("attention")
    if cancel.cancelled:
        return None
    yield Progress(2, 4, "integrated gradients of the forecast")
    forecast = _price_attribution(price, ws, day, horizon)
    lap("forecast_attribution")
    position, policy = None, None
    if strategy is not None and not cancel.cancelled:
        yield Progress(3, 4, "integrated gradients of the position")
        position, policy = _strategy_attribution(strategy, ws, day)
        lap("position_attribution")
    if cancel.cancelled:
        return None
    regime = explain_regime(ws.close[:day + 1])
    yield Progress(4, 4, "done")
    return Explanation(
        asof=f"{ws.dates[day]:%Y-%m-%d}", instrument=ws.instrument, kind="strategy" if strategy else "price",
        horizon=horizon, dates=forecast.dates, close=ws.close[day - ws.window + 1:day + 1].copy(),
        attention=attention, rollout=rollout, forecast=forecast,
        forecast_return=forecast.output * forecast.scale, regime=regime, position=position,
        strategy=policy, timings=timings)


def explain_day(model_ref: str | LoadedPriceModel | LoadedStrategy, dataset: str, date: str | None,
                horizon: int, store: RunStore | None = None, device: str = "cpu") -> Explanation:
    """explain_job run to its end (scripts, the CLI)."""
    return run_to_end(explain_job(model_ref, dataset, date, horizon, store, device))


__all__ = [
    "Attribution",
    "Explanation",
    "attention_rollout",
    "explain_day",
    "explain_job",
    "explain_regime",
    "flat_baseline",
    "input_names",
    "inputs_only",
    "integrated_gradients",
]
