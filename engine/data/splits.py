"""Calendar splits: one set of cut dates for every instrument of a run, purged and embargoed.

Cutting each series at its own 70/15/15 point puts one instrument's test years inside another's
training years; a pooled model then has seen the test period. Here the cuts are dates shared by all
instruments. Per instrument (in its own bars, T days, horizon H, embargo E >= H):

    train: ends e whose targets e+1..e+H all lie on or before train_end (the purge)
    val:   ends at least E bars after the last day on or before train_end, targets on or before val_end
    test:  ends at least E bars after the last day on or before val_end (and on or after test_start)

so no train target reaches a val or test day and no val target reaches a test day. Only ends with
all H targets are used, as in `chronological_split`; an instrument with no days in a part gets an
empty array there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.config import DataConfig
from engine.data.windows import PooledWindows, Split, WindowSet

STRATEGY_TRAIN_SHARE = 2 / 3  # of the price network's validation days; the rest validate stage 2
_DAY_NS = 86_400 * 10**9
DateLike = str | pd.Timestamp


def _iso(value: DateLike, name: str) -> str:
    """A date as YYYY-MM-DD; a clear ValueError for anything that is not one day."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: {value!r} is not a date (use YYYY-MM-DD)") from exc
    if pd.isna(stamp):
        raise ValueError(f"{name}: {value!r} is not a date (use YYYY-MM-DD)")
    return stamp.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class CutDates:
    """The run's cut dates (inclusive YYYY-MM-DD); kept in the run record so evaluation and
    backtests know which days the model never trained or selected on."""

    train_end: str
    val_end: str
    test_start: str | None = None  # first day a test end may lie on; None: val_end + embargo bars

    def __post_init__(self) -> None:
        for name in ("train_end", "val_end", "test_start"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _iso(value, name))
        if self.train_end >= self.val_end:
            raise ValueError(f"train_end {self.train_end} must come before val_end {self.val_end}")
        if self.test_start is not None and self.test_start <= self.val_end:
            raise ValueError(f"test_start {self.test_start} must come after val_end {self.val_end}")

    def to_dict(self) -> dict[str, str | None]:
        return {"train_end": self.train_end, "val_end": self.val_end, "test_start": self.test_start}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CutDates:
        return cls(train_end=data["train_end"], val_end=data["val_end"], test_start=data.get("test_start"))


def recorded_cut_dates(cfg: DataConfig) -> CutDates | None:
    """The cut dates a run's data config holds once resolved (all three); None for a run from
    before calendar splits, or one whose cuts are still to be resolved."""
    if cfg.train_end is None or cfg.val_end is None or cfg.test_start is None:
        return None
    return CutDates(train_end=cfg.train_end, val_end=cfg.val_end, test_start=cfg.test_start)


def pooled_calendar(sets: Sequence[WindowSet]) -> pd.DatetimeIndex:
    """Every trading day of any instrument, ascending: the span the fractions are taken of."""
    if not sets:
        raise ValueError("calendar cut dates need at least one instrument")
    stamps = [ws.dates.to_numpy(dtype="datetime64[ns]").view(np.int64) for ws in sets if len(ws.dates)]
    if not stamps:
        return pd.DatetimeIndex([], dtype="datetime64[ns]")
    # Daily bars on midnights: mark each instrument's days in one boolean array over the span, no sort of
    # the millions of instrument-days a universe has (np.unique's sort was most of the cut dates' cost).
    first, last = min(int(a[0]) for a in stamps), max(int(a[-1]) for a in stamps)
    if first % _DAY_NS or (last - first) // _DAY_NS > 10**7 or any((a % _DAY_NS).any() for a in stamps):
        return pd.DatetimeIndex(np.unique(np.concatenate(stamps)).astype("datetime64[ns]"))  # intraday stamps
    seen = np.zeros((last - first) // _DAY_NS + 1, dtype=bool)
    for a in stamps:
        seen[(a - first) // _DAY_NS] = True
    return pd.DatetimeIndex((first + np.flatnonzero(seen) * _DAY_NS).astype("datetime64[ns]"))


def calendar_cut_dates(sets: Sequence[WindowSet], val_fraction: float, test_fraction: float,
                       train_end: DateLike | None = None, val_end: DateLike | None = None,
                       embargo: int = 0) -> CutDates:
    """Cut dates at fractions of the pooled calendar (every day of any instrument, first to last),
    or at explicit dates (either may be given alone; the other comes from its fraction).
    test_start is the embargo-th pooled day after val_end, so it is one date for seen and unseen
    instruments alike."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be in [0, 1) "
                         "and leave some days to train on")
    calendar = pooled_calendar(sets)
    n, first, last = len(calendar), calendar[0], calendar[-1]
    span = f"the data run from {first:%Y-%m-%d} to {last:%Y-%m-%d}"
    at = lambda fraction: calendar[min(max(round(n * fraction) - 1, 0), n - 1)]
    given = lambda value, name: pd.Timestamp(_iso(value, name))
    train = given(train_end, "train_end") if train_end is not None else at(1 - val_fraction - test_fraction)
    val = given(val_end, "val_end") if val_end is not None else at(1 - test_fraction)
    if not first <= train < last:
        raise ValueError(f"train_end {train:%Y-%m-%d} lies outside the data: {span}")
    if not first < val <= last:
        raise ValueError(f"val_end {val:%Y-%m-%d} lies outside the data: {span}")
    if train >= val:
        given = "given" if train_end is not None and val_end is not None else "from the fractions"
        raise ValueError(f"train_end {train:%Y-%m-%d} must come before val_end {val:%Y-%m-%d} ({given})")
    horizon = max(ws.horizon for ws in sets)
    after = calendar.searchsorted(val, side="right") + max(int(embargo), horizon)
    test_start = calendar[after] if after < n else val + pd.Timedelta(days=1)
    return CutDates(train_end=_iso(train, "train_end"), val_end=_iso(val, "val_end"),
                    test_start=_iso(test_start, "test_start"))


def calendar_split(ws: WindowSet, cuts: CutDates, embargo: int) -> Split:
    """One instrument's window ends in each part of the shared cut dates (see the module doc);
    the embargo is widened to the horizon."""
    embargo = max(int(embargo), ws.horizon)
    ends = ws.ends[ws.has_targets(ws.ends)]
    last_target = ends + ws.horizon
    days = _days(ws.dates)
    at = lambda day, side: int(days.searchsorted(_stamp(day, ws.dates), side=side))
    n_train = at(cuts.train_end, "right")  # days on or before
    n_val = at(cuts.val_end, "right")
    test_from = n_val + embargo - 1
    if cuts.test_start is not None:
        test_from = max(test_from, at(cuts.test_start, "left"))
    return Split(train=ends[last_target < n_train],
                 val=ends[(ends >= n_train + embargo - 1) & (last_target < n_val)],
                 test=ends[ends >= test_from])


def _days(dates: pd.DatetimeIndex) -> np.ndarray:
    """The dates as numpy datetime64 (tz-naive) or the index itself: numpy's searchsorted skips pandas'
    per-call checks, thousands of calls in a universe's split."""
    return dates if getattr(dates, "tz", None) is not None else dates.to_numpy()


def _stamp(day: str, dates: pd.DatetimeIndex) -> pd.Timestamp | np.datetime64:
    return pd.Timestamp(day) if getattr(dates, "tz", None) is not None else np.datetime64(day, "ns")


def pooled_calendar_split(pool: PooledWindows, cuts: CutDates, embargo: int) -> Split:
    """(set, end) pairs of every instrument cut at the same dates; refuses a pool with nothing to train on."""
    splits = [calendar_split(ws, cuts, embargo) for ws in pool.sets]
    if not any(len(s.train) for s in splits):
        names = ", ".join(ws.instrument for ws in pool.sets)
        raise ValueError(f"no instrument ({names}) has a full window with targets on or before "
                         f"train_end {cuts.train_end}")
    return Split(*(pool.pairs([getattr(s, part) for s in splits]) for part in ("train", "val", "test")))


def split_json(cuts: CutDates, sets: Sequence[WindowSet], embargo: int = 0) -> dict[str, list[str | None]]:
    """The CLI's "split" of a price run: {part: [first, last]} over all instruments (split_spans)."""
    return split_spans(sets, [calendar_split(ws, cuts, embargo) for ws in sets], cuts)


def split_spans(sets: Sequence[WindowSet], splits: Sequence[Split], cuts: CutDates,
                ) -> dict[str, list[str | None]]:
    """{part: [first, last]} of per-instrument splits, from the days actually used: first = the
    earliest window end, last = the latest target day. A test part with no days yet reads
    [test_start, null]."""
    out: dict[str, list[str | None]] = {}
    for part in ("train", "val", "test"):
        used = [(ws, getattr(sp, part)) for ws, sp in zip(sets, splits) if len(getattr(sp, part))]
        if used:
            out[part] = [_iso(min(ws.dates[e[0]] for ws, e in used), part),
                         _iso(max(ws.dates[e[-1] + ws.horizon] for ws, e in used), part)]
        elif part == "test":
            start = cuts.test_start or _iso(pd.Timestamp(cuts.val_end) + pd.Timedelta(days=1), part)
            out[part] = [start, None]
        else:
            raise ValueError(f"no instrument has {part} windows between the cut dates {cuts.to_dict()}")
    return out


def strategy_cut_dates(sets: Sequence[WindowSet], price_cuts: CutDates,
                       share: float = STRATEGY_TRAIN_SHARE) -> CutDates:
    """Stage 2's own cut dates, inside the price network's validation period (train_end, val_end]:
    the price network was not fitted on those days, so the features it encodes there are out of
    sample. The first `share` of the period's pooled days train stage 2, the rest validate it; its
    test part is stage 1's."""
    calendar = pooled_calendar(sets)
    period = calendar[(calendar > pd.Timestamp(price_cuts.train_end))
                      & (calendar <= pd.Timestamp(price_cuts.val_end))]
    if len(period) < 2:
        raise ValueError(f"the price run's validation period {price_cuts.train_end} .. "
                         f"{price_cuts.val_end} holds {len(period)} trading day(s): stage 2 trains "
                         "and validates there; retrain the price network with a later val_end")
    cut = period[min(max(round(len(period) * share) - 1, 0), len(period) - 2)]
    return CutDates(train_end=_iso(cut, "train_end"), val_end=price_cuts.val_end,
                    test_start=price_cuts.test_start)


def strategy_split(ws: WindowSet, price_cuts: CutDates, cuts: CutDates) -> Split:
    """One instrument's stage-2 window ends: train and validation only among the price network's
    validation ends (at least the horizon after its last training target), cut at stage 2's own
    train_end; the test part is stage 1's. Stage 2's labels are next-day returns, so the horizon's
    purge and embargo at its own cut keep its training and validation labels apart (the features
    are causal), and leave a short validation period room for seq_len-day walks."""
    unseen = calendar_split(ws, price_cuts, ws.horizon)
    own = calendar_split(ws, cuts, ws.horizon)
    return Split(train=np.intersect1d(own.train, unseen.val), val=np.intersect1d(own.val, unseen.val),
                 test=unseen.test)


def days_after(ws: WindowSet, date: DateLike) -> np.ndarray:
    """Window end days on or after `date` (a model's test start): the default backtest/evaluation
    days for any instrument, seen or unseen. Never falls back to earlier (in-sample) days."""
    start = pd.Timestamp(_iso(date, "date"))
    days = ws.ends[ws.dates[ws.ends] >= start]
    if not len(days):
        last = f"{ws.dates[-1]:%Y-%m-%d}" if len(ws.dates) else "no days"
        raise ValueError(f"{ws.instrument}: no days on or after the model's test start {start:%Y-%m-%d} "
                         f"(its data end {last}); give data reaching past that date")
    return days
