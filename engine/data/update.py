"""Update a dataset the workstation holds with a newer export, by content: new bars are appended,
bars that changed after the fact (revisions, re-adjustments) are listed and kept as they were.

The app never writes a user's file or a bundled sample: an update writes a merged canonical CSV (one
per instrument; a folder for a universe) into the data folder beside the run history, atomically, and
`held_source` points every later read of the dataset at it. A revised bar keeps its old value unless
the update is told to accept revisions (recorded in the held copy's log). The canonical file holds raw
prices and, where the source had one, its Adj Close, so it imports exactly as the original did.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.atomic import atomic_write
from engine.data.io import BarTable, load_bars
from engine.data.samples import list_samples, sample_path
from engine.data.universe import is_universe, load_universe

HEADER = {"open": "open", "high": "high", "low": "low", "close": "close", "adjclose": "adj close",
          "volume": "volume", "amount": "amount", "turnover": "turnover%", "trades": "trades"}
REL_TOL = 1e-9  # a value differing by less than this (relative) is the same value written differently
LOG = "updates.json"  # beside the held copies: what every update did


@dataclass(frozen=True)
class Revision:
    instrument: str
    date: str
    column: str
    old: float | None  # None: the held bar had no value there
    new: float


@dataclass
class UpdateReport:
    """What one update did (CLI.md keys: added, revised, instruments)."""

    dataset: str
    held: str  # the merged canonical file (or universe folder) every later read uses
    added: int
    revised: list[Revision]
    instruments: int
    accepted: bool  # revisions were applied (the user asked), not just listed
    trained_on: list[dict] = field(default_factory=list)  # revisions inside a model's training period

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "held": self.held, "added": self.added,
                "revised": [asdict(r) for r in self.revised], "instruments": self.instruments,
                "accepted": self.accepted, "trained_on": self.trained_on}


def data_folder(history: Path) -> Path:
    """The app's data folder: beside the run history file."""
    return Path(history).parent / "data"


def _key(dataset: str) -> str:
    """A dataset's identity: a sample's name, else the file or folder's absolute path."""
    path = Path(dataset)
    return str(path.resolve()) if path.exists() else dataset


def held_path(dataset: str, folder: Path) -> Path:
    """Where the held copy of `dataset` lives; a held copy is its own dataset."""
    folder = Path(folder)
    if Path(dataset).exists() and folder.resolve() in Path(dataset).resolve().parents:
        return Path(dataset).resolve()
    stem = Path(dataset).stem if Path(dataset).exists() else _sample_stem(dataset)
    tag = hashlib.sha256(_key(dataset).encode()).hexdigest()[:8]
    suffix = "" if is_universe(dataset) else ".csv"
    return folder / f"{stem}-{tag}{suffix}"


def _sample_stem(name: str) -> str:
    """A sample's file stem (it carries the exchange code the importer reads the market from)."""
    return sample_path(name).stem if name in {s.name for s in list_samples()} else name


def held_source(dataset: str, folder: Path) -> str:
    """The dataset as the workstation now holds it: its updated copy when there is one."""
    path = held_path(dataset, folder)
    return str(path) if path.exists() else dataset


def canonical_frame(bars: BarTable, raw: BarTable) -> pd.DataFrame:
    """Raw prices of the present columns plus the Adj Close the adjusted import derived from."""
    frame = raw.frame[raw.present].copy()
    if bars.adjusted or bars.market == "us":  # Adj Close also tells the importer the market is us
        frame["adjclose"] = bars.frame["close"]
    return frame


def read_instrument(source: str) -> tuple[pd.DataFrame, BarTable]:
    bars = load_bars(source)
    raw = load_bars(source, adjust=False) if bars.adjusted else bars
    return canonical_frame(bars, raw), bars


def write_canonical(frame: pd.DataFrame, path: Path) -> None:
    """The frame as a CSV load_bars reads back to the same bars (turnover in percent, as exports give it)."""
    out = frame[[c for c in HEADER if c in frame.columns]].copy()
    if "turnover" in out:
        out["turnover"] *= 100.0
    out.columns = [HEADER[c] for c in out.columns]
    out.index = out.index.strftime("%Y-%m-%d")
    out.index.name = "date"
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        out.to_csv(handle)  # shortest repr: every float reads back to the same bits


def merge_bars(old: pd.DataFrame, new: pd.DataFrame, instrument: str, accept: bool = False,
               ) -> tuple[pd.DataFrame, int, list[Revision]]:
    """(merged frame, bars added, revisions): dates only in `new` are appended; on shared dates a
    value that differs (or fills a hole) is a revision, kept old unless `accept`. A value missing
    from the new export is no revision: exports differ in the columns they carry."""
    columns = list(dict.fromkeys([*old.columns, *new.columns]))
    old, new = old.reindex(columns=columns), new.reindex(columns=columns)
    shared = old.index.intersection(new.index)
    a, b = old.loc[shared].to_numpy(np.float64), new.loc[shared].to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        differs = np.isfinite(b) & ~(np.abs(a - b) <= REL_TOL * np.maximum(np.abs(a), 1.0))
    rows, cols = np.nonzero(differs)
    revised = [Revision(instrument, f"{shared[r]:%Y-%m-%d}", columns[c],
                        None if np.isnan(a[r, c]) else float(a[r, c]), float(b[r, c])) for r, c in zip(rows, cols)]
    fresh = new.loc[new.index.difference(old.index)]
    merged = pd.concat([old, fresh]).sort_index()
    if accept and revised:
        merged.loc[shared] = np.where(differs, b, a)
    return merged, len(fresh), revised


def _members(source: str) -> dict[str, pd.DataFrame]:
    """Instrument name -> canonical frame, for one file or every instrument of a universe."""
    if is_universe(source):
        universe = load_universe(source)
        return {t.instrument: t.frame[t.present] for t in universe.tables}
    frame, bars = read_instrument(source)
    return {Path(source).stem if Path(source).exists() else bars.instrument: frame}


def update_dataset(dataset: str, newer: str, folder: Path, *, accept_revisions: bool = False,
                   periods: list[dict] | None = None) -> UpdateReport:
    """Merge the export `newer` into `dataset` (as held) and write the held copy.

    One instrument: `newer` is its newer export, whatever its file name. A universe: `newer` is a
    folder (or universe) of exports matched to members by instrument name; unknown names join it.
    periods: training periods to warn about ({"run_id", "train_end", "val_end", "live"}); a revision
    on or before a period's val_end is listed in trained_on.
    """
    folder = Path(folder)
    target = held_path(dataset, folder)
    current = held_source(dataset, folder)
    universe = is_universe(current)
    if universe:
        old, new = _members(current), _members(newer)
    else:
        (name, frame), = _members(current).items()
        old = {name: frame}
        new = {name: next(iter(_members(newer).values()))} if not is_universe(newer) else None
        if new is None:
            raise ValueError(f"{dataset} is one instrument and {newer} is a universe: give one file")
    added, revised, merged = 0, [], {}
    for name, frame in new.items():
        held = old.get(name, frame.iloc[:0])
        merged[name], n, revisions = merge_bars(held, frame, name, accept_revisions)
        added, revised = added + n, revised + revisions
    if universe:
        for name, frame in merged.items():
            write_canonical(frame, target / f"{name}.csv")
    else:
        write_canonical(merged[name], target)
    report = UpdateReport(dataset, str(target), added, revised, len(merged), accept_revisions,
                          _trained_on(revised, periods or []))
    _log(folder, report)
    return report


def training_periods(store, dataset: str) -> list[dict]:
    """The training periods of runs (in `store`, a RunStore) that trained on `dataset` (by name) or
    are live on it: what an update warns about (the CLI's `update` and the GUI's)."""
    live = {m["run_id"] for m in store.live_models() if m["dataset"] == dataset}
    periods = []
    for run in store.list_runs():
        sources = (run.get("config") or {}).get("sources") or []
        data = (run.get("config") or {}).get("data") or {}
        if run["run_id"] in live or dataset in sources:
            periods.append({"run_id": run["run_id"], "live": run["run_id"] in live,
                            "train_end": data.get("train_end"), "val_end": data.get("val_end")})
    return periods


def _trained_on(revised: list[Revision], periods: list[dict]) -> list[dict]:
    """Per training period, the revised dates on or before its last training/validation day."""
    found = []
    for period in periods:
        end = period.get("val_end") or period.get("train_end")
        dates = sorted({r.date for r in revised if end and r.date <= end})
        if dates:
            found.append({**period, "dates": dates,
                          "message": f"run {period['run_id']} trained on {len(dates)} revised day(s) "
                                     f"({dates[0]} .. {dates[-1]}, its training ends {end})"})
    return found


def _log(folder: Path, report: UpdateReport) -> None:
    """Append the update to the data folder's log (accepted revisions are recorded there)."""
    path = folder / LOG
    entries = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    entries.append({**report.to_json(), "at": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")})
    with atomic_write(path, "w", encoding="utf-8") as handle:
        json.dump(entries, handle, ensure_ascii=False)


__all__ = ["Revision", "UpdateReport", "data_folder", "held_path", "held_source", "merge_bars",
           "training_periods", "update_dataset"]
