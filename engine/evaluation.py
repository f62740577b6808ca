"""Forecast quality in return units: is the model better than saying "no change", and does it rank?

Price errors in currency flatter a model on a high-priced instrument and cannot be pooled, so every
figure here compares predicted with realised h-day log returns, log(close_{e+h} / close_e):
mae_ratio (model MAE / MAE of the zero-return forecast; below 1 beats it), Pearson `ic` and
Spearman `rank_ic`, `hit_rate` (sign agreement over days that moved) beside `up_rate` (how often an
always-up guess would hit). Pooled figures are per-instrument averages, never sums. Undefined
figures (no days, a constant forecast) are NaN, never a warning; the CLI writes them as null.

A distributional forecast (quantiles [n, H, Q] of the h-day log return at `levels`) is scored by
the pinball loss against reference forecasts on the same days (`pinball_skill` = 1 - model / ref:
above 0 beats it), the share of realised returns inside its central bands (`coverage`: 50/80/90 %)
and a PIT histogram (flat when calibrated).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MIN_DAYS = 3  # a correlation of fewer points is +-1 or undefined, not evidence

INSTRUMENT_KEYS = ("mae_ratio", "ic", "rank_ic", "hit_rate", "up_rate")
NESTED_KEYS = ("pinball_skill", "coverage")  # {name: figure} per horizon, pooled name by name
BANDS = {"0.5": (0.25, 0.75), "0.8": (0.1, 0.9), "0.9": (0.05, 0.95)}  # central band -> its two levels
BAND_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)  # the median and every band's levels
PIT_BINS = 10


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
        nested = {k: _pooled_nested([row.get(k) for row in used]) for k in NESTED_KEYS if any(k in r for r in used)}
        out.append({"h": h, "instruments": len(used), "days": sum(row["days"] for row in used), **means, **nested})
    return {"horizons": out}


def _pooled_nested(values: list[Mapping[str, float | None] | None]) -> dict[str, float] | None:
    """Name-by-name average of {name: figure} dicts (None: an instrument without them, left out)."""
    given = [v for v in values if v is not None]
    if not given:
        return None
    names = dict.fromkeys(k for v in given for k in v)
    return {k: float(_mean(np.array([np.nan if v.get(k) is None else v[k] for v in given], dtype=np.float64)))
            for k in names}


def cross_section(pred: np.ndarray, realised: np.ndarray, min_names: int = 5) -> dict[str, Any]:
    """Per date [D] across instruments [N] (NaN where an instrument has no data that day): IC and rank
    IC, then their means over dates, icir = mean / std of the daily IC (rank_icir likewise), and the
    mean realised return of the top minus the bottom quintile by prediction (ties share a rank, so a
    flat day has no quintiles). Dates with fewer than min_names instruments are skipped."""
    p, r, ok = _cross_days(pred, realised, min_names)
    n = ok.sum(1)
    ic, rank_ic = row_pearson(p, r), row_rank_pearson(p, r)
    ranks, k = average_ranks(p), np.maximum(n // 5, 1)[:, None]
    top, bottom = ok & (ranks > n[:, None] - k), ok & (ranks <= k)
    group_mean = lambda g: _divide(np.where(g, r, 0.0).sum(1), g.sum(1))
    return {"days": int(ok.any(1).sum()), "rank_ic": float(_mean(rank_ic)), "ic": float(_mean(ic)),
            "icir": _ir(ic), "rank_icir": _ir(rank_ic),
            "top_minus_bottom": float(_mean(group_mean(top) - group_mean(bottom)))}


def _cross_days(pred: np.ndarray, realised: np.ndarray, min_names: int) -> tuple[np.ndarray, ...]:
    """(pred, realised, ok) [D, N] NaN outside ok: both defined on a day with >= min_names such pairs."""
    p, r = np.asarray(pred, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    if p.ndim != 2 or p.shape != r.shape:
        raise ValueError(f"cross_section needs pred and realised [dates, instruments]; got {p.shape}, {r.shape}")
    ok = np.isfinite(p) & np.isfinite(r)
    ok &= (ok.sum(1) >= max(min_names, MIN_DAYS))[:, None]
    return np.where(ok, p, np.nan), np.where(ok, r, np.nan), ok


def daily_rank_ic(pred: np.ndarray, realised: np.ndarray, min_names: int = 5) -> np.ndarray:
    """[D] the rank IC of each day across instruments (NaN on days cross_section skips): rolling IC charts."""
    p, r, _ = _cross_days(pred, realised, min_names)
    return row_rank_pearson(p, r)


def cross_section_rows(pred: np.ndarray, realised: np.ndarray, horizons: Sequence[int] | None = None,
                       min_names: int = 5) -> list[dict[str, Any]]:
    """cross_section per horizon of pred, realised [D, N, H] (pred may be [D, N]: one score for all
    horizons, as a factor is): [{"h", "days", "rank_ic", "ic", "icir", "rank_icir", "top_minus_bottom"}]."""
    r = np.asarray(realised, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if p.ndim == 2:
        p = np.broadcast_to(p[..., None], r.shape)
    labels = list(horizons) if horizons is not None else list(range(1, r.shape[2] + 1))
    return [{"h": int(h), **cross_section(p[..., i], r[..., i], min_names)} for i, h in enumerate(labels)]


def _ir(daily: np.ndarray) -> float:
    """Mean over std (ddof 1) of the defined daily values; NaN with fewer than 2 or no spread."""
    x = daily[np.isfinite(daily)]
    if len(x) < 2 or np.all(x == x[0]):
        return float("nan")
    return float(x.mean() / x.std(ddof=1))


def _level_index(levels: Sequence[float], level: float) -> int | None:
    hits = np.flatnonzero(np.isclose(np.asarray(levels, dtype=np.float64), level))
    return int(hits[0]) if len(hits) else None


def _quantile_arrays(q: np.ndarray, realised: np.ndarray, levels: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    q, r = np.asarray(q, dtype=np.float64), np.asarray(realised, dtype=np.float64)
    if q.ndim != 3 or q.shape[:2] != r.shape or q.shape[2] != len(levels):
        raise ValueError(f"quantiles {q.shape} need [n, H, {len(levels)}] beside realised {r.shape}")
    return q, r


def pinball(q: np.ndarray, realised: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """[H] mean pinball loss of quantiles q [n, H, Q] at `levels` for realised [n, H], averaged over
    the levels and the days where the realised value and every quantile are finite."""
    q, r = _quantile_arrays(q, realised, levels)
    tau = np.asarray(levels, dtype=np.float64)
    miss = r[..., None] - q  # (n, H, Q)
    loss = np.maximum(tau * miss, (tau - 1.0) * miss).mean(-1)
    ok = np.isfinite(loss)
    return _mean(np.where(ok, loss, np.nan).T)


def pinball_skill(model: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """1 - model / baseline pinball loss: above 0 the model beats the baseline (NaN where undefined)."""
    return 1.0 - _divide(model, baseline)


def coverage(q: np.ndarray, realised: np.ndarray, levels: Sequence[float]) -> dict[str, np.ndarray | None]:
    """{"0.5", "0.8", "0.9"}: [H] share of days whose realised value lies in the central band
    [q_lo, q_hi]; None for a band whose levels the forecast does not carry."""
    q, r = _quantile_arrays(q, realised, levels)
    out: dict[str, np.ndarray | None] = {}
    for band, (lo, hi) in BANDS.items():
        i, j = _level_index(levels, lo), _level_index(levels, hi)
        if i is None or j is None:
            out[band] = None
            continue
        ok = np.isfinite(r) & np.isfinite(q[..., i]) & np.isfinite(q[..., j])
        inside = ok & (r >= q[..., i]) & (r <= q[..., j])
        out[band] = _divide(inside.sum(0), ok.sum(0))
    return out


def pit(q: np.ndarray, realised: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """[n, H] probability integral transform: the level at which the realised value meets the
    quantile function, interpolated linearly between the given levels (quantiles sorted first, so
    crossing ones are rearranged); beyond the outer quantiles, the middle of that tail."""
    q, r = _quantile_arrays(q, realised, levels)
    q = np.sort(q, axis=-1)
    tau = np.concatenate([[0.0], np.asarray(levels, dtype=np.float64), [1.0]])
    k = (q <= r[..., None]).sum(-1)  # quantiles at or below: 0..Q
    edges = np.concatenate([q[..., :1], q, q[..., -1:]], axis=-1)  # the tails: zero width
    lo_q = np.take_along_axis(edges, k[..., None], -1)[..., 0]
    hi_q = np.take_along_axis(edges, k[..., None] + 1, -1)[..., 0]
    lo_t, hi_t = tau[k], tau[k + 1]
    inner = (k > 0) & (k < q.shape[-1])
    frac = np.where(inner, _divide(r - lo_q, hi_q - lo_q), 0.5)  # tails: midpoint; flat steps: lower
    u = lo_t + (hi_t - lo_t) * np.nan_to_num(frac)
    return np.where(np.isfinite(r) & np.isfinite(q).all(-1), u, np.nan)


def pit_histogram(q: np.ndarray, realised: np.ndarray, levels: Sequence[float],
                  bins: int = PIT_BINS) -> np.ndarray:
    """[H, bins] share of days whose PIT falls in each of `bins` equal bins of [0, 1] (all near
    1 / bins when calibrated); NaN rows for a horizon without days."""
    u = pit(q, realised, levels)
    ok = np.isfinite(u)
    which = np.clip((np.nan_to_num(u) * bins).astype(np.int64), 0, bins - 1)
    counts = (ok[..., None] & (which[..., None] == np.arange(bins))).sum(0)  # (H, bins)
    return _divide(counts, ok.sum(0)[:, None])


def _floats(x: np.ndarray | None, i: int) -> float | None:
    return None if x is None else float(x[i])


def distribution_scores(q: np.ndarray, realised: np.ndarray, levels: Sequence[float],
                        references: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per horizon: pinball loss, pinball_skill against each reference forecast [n, H, Q] (scored on
    the days both have) and coverage of the central bands."""
    q, r = _quantile_arrays(q, realised, levels)
    finite = np.isfinite(q).all(-1)
    skills = {}
    for name, ref in references.items():
        ref, _ = _quantile_arrays(ref, r, levels)
        both = np.where(finite & np.isfinite(ref).all(-1), r, np.nan)
        skills[name] = pinball_skill(pinball(q, both, levels), pinball(ref, both, levels))
    loss, cover = pinball(q, r, levels), coverage(q, r, levels)
    return [{"pinball": float(loss[i]), "pinball_skill": {k: float(v[i]) for k, v in skills.items()},
             "coverage": {band: _floats(v, i) for band, v in cover.items()}} for i in range(r.shape[1])]


def baseline_report(references: Mapping[str, np.ndarray], realised: np.ndarray, levels: Sequence[float],
                    against: str = "climatology") -> dict[str, Any]:
    """Each baseline's own figures (pinball skill against `against`, coverage), per horizon, as in
    the published reference tables."""
    r = np.asarray(realised, dtype=np.float64)
    out = {}
    for name, q in references.items():
        rows = distribution_scores(q, r, levels, {against: references[against]})
        days = (np.isfinite(r) & np.isfinite(np.asarray(q)).all(-1)).sum(0)
        out[name] = {"horizons": [{"h": i + 1, "days": int(days[i]), **row} for i, row in enumerate(rows)]}
    return out


def distribution_figures(quantiles: np.ndarray | None, realised: np.ndarray, levels: Sequence[float],
                         references: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """One instrument's distributional figures: "rows" (pinball_skill and coverage per horizon, None
    for a point forecast), "pit" (None or {"edges", "fraction": [H][bins]}) and "baselines"."""
    rows: list[dict[str, Any]] = [{"pinball_skill": None, "coverage": None}] * np.shape(realised)[1]
    histogram = None
    if quantiles is not None:
        rows = [{k: row[k] for k in NESTED_KEYS}
                for row in distribution_scores(quantiles, realised, levels, references)]
        fractions = pit_histogram(quantiles, realised, levels)
        histogram = {"edges": np.linspace(0.0, 1.0, PIT_BINS + 1).tolist(),
                     "fraction": [[float(x) for x in row] for row in fractions]}
    return {"rows": rows, "pit": histogram, "baselines": baseline_report(references, realised, levels)}


def evaluate_forecasts(instruments: Mapping[str, tuple[np.ndarray, np.ndarray]],
                       panel: tuple[np.ndarray, np.ndarray] | None = None,
                       horizons: Sequence[int] | None = None, min_names: int = 5, *,
                       quantiles: Mapping[str, np.ndarray | None] | None = None,
                       references: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                       levels: Sequence[float] = BAND_LEVELS) -> dict[str, Any]:
    """The `evaluate` report: {"instruments": {name: {"horizons": [...]}}, "pooled": {...},
    "cross_section": None | {"horizons": [...]}}. instruments maps a name to (pred, realised)
    [n_days, H] log returns; panel is (pred, realised) [dates, instruments, H] on a shared calendar.
    references (per name: {"climatology", "ewma", "garch"} quantiles [n, H, Q] at `levels`) add
    pinball_skill and coverage to each horizon (null without the name's model quantiles), and
    "pit" and "baselines" to the instrument."""
    report = {name: {"horizons": horizon_scores(p, r, horizons)} for name, (p, r) in instruments.items()}
    for name, refs in (references or {}).items():
        figures = distribution_figures((quantiles or {}).get(name), instruments[name][1], levels, refs)
        for row, extra in zip(report[name]["horizons"], figures["rows"]):
            row.update(extra)
        report[name].update(pit=figures["pit"], baselines=figures["baselines"])
    section = None
    if panel is not None:
        p, r = (np.asarray(a, dtype=np.float64) for a in panel)
        if p.ndim == 2:
            p, r = p[..., None], r[..., None]
        section = {"horizons": cross_section_rows(p, r, horizons, min_names)}
    return {"instruments": report, "pooled": pooled_scores(report), "cross_section": section}
