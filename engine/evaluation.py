"""Forecast quality in return units: is the model better than saying "no change", and does it rank?

Price errors in currency flatter a model on a high-priced instrument and cannot be pooled, so every
figure here compares predicted with realised h-day log returns, log(close_{e+h} / close_e):
mae_ratio (model MAE / MAE of the zero-return forecast; below 1 beats it), Pearson `ic` and
Spearman `rank_ic`, `hit_rate` (sign agreement over days that moved) beside `up_rate` (how often an
always-up guess would hit). Pooled figures are per-instrument averages, never sums. Undefined
figures (no days, a constant forecast) are NaN, never a warning; the CLI writes them as null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MIN_DAYS = 3  # a correlation of fewer points is +-1 or undefined, not evidence

INSTRUMENT_KEYS = ("mae_ratio", "ic", "rank_ic", "hit_rate", "up_rate")


def _divide(num: np.ndarray, den: np.ndarray, ok: np.ndarray | bool = True) -> np.ndarray:
    """num / den, NaN where den is 0 or `ok` is false, without a warning."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=(den != 0) & ok)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the finite entries; NaN (not a warning) where there are none."""
    ok = np.isfinite(x)
    return _divide(np.where(ok, x, 0.0).sum(axis), ok.sum(axis))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Row-wise ranks 1..n of [D, N] (ties share their average rank); NaN stays NaN."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, axis=1, kind="stable")  # NaN sorts last
    s = np.take_along_axis(x, order, axis=1)
    pos = np.broadcast_to(np.arange(x.shape[1]), x.shape)
    starts = np.ones(x.shape, dtype=bool)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]  # NaN != NaN: each NaN is its own group
    stops = np.ones(x.shape, dtype=bool)
    stops[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=1)
    last = np.minimum.accumulate(np.where(stops, pos, x.shape[1])[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty_like(x)
    np.put_along_axis(ranks, order, np.where(np.isnan(s), np.nan, (first + last) / 2 + 1), axis=1)
    return ranks


def row_pearson(x: np.ndarray, y: np.ndarray, min_count: int = MIN_DAYS) -> np.ndarray:
    """[D] Pearson correlation of each row of x with y over entries finite in both; NaN where fewer
    than min_count such entries or either side is constant (a flat forecast carries no ranking)."""
    x, y = np.atleast_2d(np.asarray(x, dtype=np.float64)), np.atleast_2d(np.asarray(y, dtype=np.float64))
    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(1)
    dx = np.where(ok, x - _divide(np.where(ok, x, 0).sum(1), n)[:, None], 0.0)
    dy = np.where(ok, y - _divide(np.where(ok, y, 0).sum(1), n)[:, None], 0.0)
    # an exact test for constant rows: a float mean of equal values can leave ~1e-17 residues
    flat = lambda v: np.where(ok, v, np.inf).min(1) == np.where(ok, v, -np.inf).max(1)
    defined = (n >= min_count) & ~flat(x) & ~flat(y)
    return _divide((dx * dy).sum(1), np.sqrt((dx * dx).sum(1) * (dy * dy).sum(1)), defined)


def row_rank_pearson(x: np.ndarray, y: np.ndarray, min_count: int = MIN_DAYS) -> np.ndarray:
    """[D] Spearman rank correlation per row, ranked over the entries finite in both."""
    x, y = np.atleast_2d(np.asarray(x, dtype=np.float64)), np.atleast_2d(np.asarray(y, dtype=np.float64))
    both = np.isfinite(x) & np.isfinite(y)
    return row_pearson(average_ranks(np.where(both, x, np.nan)), average_ranks(np.where(both, y, np.nan)),
                       min_count)


def horizon_scores(pred: np.ndarray, realised: np.ndarray,
                   horizons: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """One instrument: pred and realised h-day log returns [n_days, H] (NaN where unknown) ->
    one dict per horizon: h, days, mae, naive_mae, mae_ratio, ic, rank_ic, hit_rate, up_rate."""
    p = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1).T  # (H, n): horizons as rows
    r = np.asarray(realised, dtype=np.float64).reshape(len(realised), -1).T
    if p.shape != r.shape:
        raise ValueError(f"pred {p.T.shape} and realised {r.T.shape} differ in shape")
    horizons = list(horizons) if horizons is not None else list(range(1, p.shape[0] + 1))
    if len(horizons) != p.shape[0]:
        raise ValueError(f"{len(horizons)} horizon labels for {p.shape[0]} columns")
    ok = np.isfinite(p) & np.isfinite(r)
    days = ok.sum(1)
    mae = _mean(np.where(ok, np.abs(p - r), np.nan))
    naive = _mean(np.where(ok, np.abs(r), np.nan))  # the zero-return forecast's error
    moved = ok & (r != 0)
    hits = moved & (np.sign(p) == np.sign(r))
    scores = {"days": days, "mae": mae, "naive_mae": naive, "mae_ratio": _divide(mae, naive),
              "ic": row_pearson(p, r), "rank_ic": row_rank_pearson(p, r),
              "hit_rate": _divide(hits.sum(1), moved.sum(1)),
              "up_rate": _divide((moved & (r > 0)).sum(1), moved.sum(1))}
    return [{"h": int(h), **{k: (int(v[i]) if k == "days" else float(v[i])) for k, v in scores.items()}}
            for i, h in enumerate(horizons)]


def pooled_scores(instruments: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per-instrument averages of the unit-free figures, per horizon (an instrument with an undefined
    figure is left out of that figure's average); days is the total count."""
    rows: dict[int, list[dict[str, Any]]] = {}
    for report in instruments.values():
        for row in report["horizons"]:
            rows.setdefault(row["h"], []).append(row)
    out = []
    for h, group in sorted(rows.items()):
        used = [row for row in group if row["days"] > 0]
        means = {k: float(_mean(np.array([row[k] for row in used], dtype=np.float64))) for k in INSTRUMENT_KEYS}
        out.append({"h": h, "instruments": len(used), "days": sum(row["days"] for row in used), **means})
    return {"horizons": out}


def cross_section(pred: np.ndarray, realised: np.ndarray, min_names: int = 5) -> dict[str, Any]:
    """Per date [D] across instruments [N] (NaN where an instrument has no data that day): IC and rank
    IC, then their means over dates, icir = mean / std of the daily IC (rank_icir likewise), and the
    mean realised return of the top minus the bottom quintile by prediction (ties share a rank, so a
    flat day has no quintiles). Dates with fewer than min_names instruments are skipped."""
    p, r = np.asarray(pred, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    if p.ndim != 2 or p.shape != r.shape:
        raise ValueError(f"cross_section needs pred and realised [dates, instruments]; got {p.shape}, {r.shape}")
    ok = np.isfinite(p) & np.isfinite(r)
    n = ok.sum(1)
    ok &= (n >= max(min_names, MIN_DAYS))[:, None]
    p, r = np.where(ok, p, np.nan), np.where(ok, r, np.nan)
    ic, rank_ic = row_pearson(p, r), row_rank_pearson(p, r)
    ranks, k = average_ranks(p), np.maximum(n // 5, 1)[:, None]
    top, bottom = ok & (ranks > n[:, None] - k), ok & (ranks <= k)
    group_mean = lambda g: _divide(np.where(g, r, 0.0).sum(1), g.sum(1))
    return {"days": int(ok.any(1).sum()), "rank_ic": float(_mean(rank_ic)), "ic": float(_mean(ic)),
            "icir": _ir(ic), "rank_icir": _ir(rank_ic),
            "top_minus_bottom": float(_mean(group_mean(top) - group_mean(bottom)))}


def _ir(daily: np.ndarray) -> float:
    """Mean over std (ddof 1) of the defined daily values; NaN with fewer than 2 or no spread."""
    x = daily[np.isfinite(daily)]
    if len(x) < 2 or np.all(x == x[0]):
        return float("nan")
    return float(x.mean() / x.std(ddof=1))


def evaluate_forecasts(instruments: Mapping[str, tuple[np.ndarray, np.ndarray]],
                       panel: tuple[np.ndarray, np.ndarray] | None = None,
                       horizons: Sequence[int] | None = None, min_names: int = 5) -> dict[str, Any]:
    """The `evaluate` report: {"instruments": {name: {"horizons": [...]}}, "pooled": {...},
    "cross_section": None | {"horizons": [...]}}. instruments maps a name to (pred, realised)
    [n_days, H] log returns; panel is (pred, realised) [dates, instruments, H] on a shared calendar."""
    report = {name: {"horizons": horizon_scores(p, r, horizons)} for name, (p, r) in instruments.items()}
    section = None
    if panel is not None:
        p, r = (np.asarray(a, dtype=np.float64) for a in panel)
        if p.ndim == 2:
            p, r = p[..., None], r[..., None]
        labels = list(horizons) if horizons is not None else list(range(1, p.shape[2] + 1))
        section = {"horizons": [{"h": int(h), **cross_section(p[..., i], r[..., i], min_names)}
                                for i, h in enumerate(labels)]}  # a handful of horizons
    return {"instruments": report, "pooled": pooled_scores(report), "cross_section": section}
