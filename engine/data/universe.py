"""A universe: many instruments from one place (a TDX vipdoc root, a folder of files, a wide close table).

One bad instrument never sinks the others: it becomes an error naming its file, the rest import.
Imports of thousands of files are a job generator (Progress events, a CancelToken) that returns the
Universe, so the GUI runs it off the UI thread and the CLI drains it with run_to_end. A member is
addressed as `UNIVERSE:CODE` (`us12:AAPL`, `/data/vipdoc:sh600000`), which load_bars understands, so
a run records and reloads each of its instruments like any other dataset.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.data import samples
from engine.data.io import (
    _CN_CODE,
    COLUMNS,
    GAP_DAYS,
    HIGH_BELOW_LOW_TOLERATED,
    BarTable,
    DataImportError,
    ImportIssue,
    _fingerprint,
    canonical_column,
    load_bars,
)
from engine.events import CancelToken, Progress, run_to_end

# TDX day record: YYYYMMDD, OHLC in 0.01 units, amount (float32), volume (shares), a reserved word.
DAY_DTYPE = np.dtype([("date", "<u4"), ("open", "<u4"), ("high", "<u4"), ("low", "<u4"), ("close", "<u4"),
                      ("amount", "<f4"), ("volume", "<u4"), ("reserved", "<u4")])
VIPDOC_MARKETS = ("sh", "sz", "bj")
# Stocks and indices by code prefix. Funds, bonds and repos share the folders but quote in other units
# (ETFs in 0.001), so they are left out of a vipdoc universe rather than read at the wrong scale.
_CODE_KINDS = {"sh": (("60", "68"), ("000", "880", "999")), "sz": (("00", "30"), ("399",)), "bj": (("4", "8"), ())}
FILE_SUFFIXES = (".csv", ".txt", ".tsv", ".xls", ".xlsx", ".day")  # what a folder universe reads
WIDE_SUFFIXES = (".csv", ".txt", ".tsv")
SEPARATOR = ":"  # UNIVERSE:CODE names one member
PROGRESS_STEPS = 200  # Progress events over a whole import, however many files
GAP_NOTE = "a trading suspension or missing data"  # how io's gap warnings end too, so coverage counts both


@dataclass(frozen=True)
class UniverseFilters:
    """Which instruments of a universe to keep; the rest are `skipped` (with the reason), never errors."""

    min_rows: int = 0  # bars inside the date range
    start: str | None = None  # YYYY-MM-DD, inclusive
    end: str | None = None
    prefixes: tuple[str, ...] = ()  # code prefixes, any case ("sh60", "sz00", "AA"); () keeps all

    def to_dict(self) -> dict:
        return {**self.__dict__, "prefixes": list(self.prefixes)}

    @classmethod
    def from_dict(cls, d: dict) -> UniverseFilters:
        return cls(**{**d, "prefixes": tuple(d.get("prefixes", ()))})

    def keeps_name(self, name: str) -> bool:
        return not self.prefixes or name.lower().startswith(tuple(p.lower() for p in self.prefixes))


@dataclass(frozen=True)
class UniverseError:
    file: str
    message: str


@dataclass
class Coverage:
    """What the universe spans: instruments, the earliest first and latest last bar, the first day every
    instrument has started, total bars, and gaps (pauses over GAP_DAYS calendar days, all instruments)."""

    instruments: int
    rows: int
    first: str | None
    last: str | None
    all_from: str | None
    gaps: int
    with_gaps: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Universe:
    source: str  # what the user named: a path or a bundled universe's name
    kind: str  # "vipdoc" | "folder" | "wide"
    tables: list[BarTable]
    errors: list[UniverseError] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (instrument, why) left out by the filters
    cancelled: bool = False

    @property
    def coverage(self) -> Coverage:
        firsts = [t.frame.index[0] for t in self.tables]
        lasts = [t.frame.index[-1] for t in self.tables]
        gaps = [sum(_is_gap(w) for w in t.warnings) for t in self.tables]
        return Coverage(instruments=len(self.tables), rows=sum(len(t.frame) for t in self.tables),
                        first=_iso(min(firsts)) if firsts else None, last=_iso(max(lasts)) if lasts else None,
                        all_from=_iso(max(firsts)) if firsts else None, gaps=sum(gaps),
                        with_gaps=sum(g > 0 for g in gaps))

    def sources(self) -> list[str]:
        """Each instrument as a dataset load_bars reads (UNIVERSE:CODE)."""
        return [member_source(self.source, t.instrument) for t in self.tables]

    def to_json(self) -> dict:
        """What `inspect` prints for a universe."""
        return {
            "source": self.source, "kind": self.kind,
            "instruments": [{"instrument": t.instrument, "source": member_source(self.source, t.instrument),
                             "market": t.market, "rows": len(t.frame), "first": _iso(t.frame.index[0]),
                             "last": _iso(t.frame.index[-1]), "last_close": float(t.frame["close"].iloc[-1]),
                             "present": t.present, "missing": t.missing} for t in self.tables],
            "errors": [{"file": e.file, "message": e.message} for e in self.errors],
            "warnings": [{"instrument": t.instrument, "row": w.row, "column": w.column, "message": w.message,
                          "date": w.date} for t in self.tables for w in t.warnings],
            "skipped": [{"instrument": name, "reason": why} for name, why in self.skipped],
            "coverage": self.coverage.to_dict(), "cancelled": self.cancelled,
        }


# ---------------------------------------------------------------- what a path is


def universe_kind(source: str | Path) -> str | None:
    """"vipdoc", "folder" or "wide" where `source` names a universe (a bundled one's name too), else None."""
    if isinstance(source, str) and source in {s.name for s in samples.list_universes()}:
        return "wide"
    path = Path(source)
    if path.is_dir():  # a folder with nothing the importer reads is no universe
        return "vipdoc" if _vipdoc_folders(path) else "folder" if _folder_files(path) else None
    return "wide" if path.is_file() and _wide_columns(path) is not None else None


def is_universe(source: str | Path) -> bool:
    return universe_kind(source) is not None


def member_source(universe: str, code: str) -> str:
    return f"{universe}{SEPARATOR}{code}"


def split_member(source: str | Path) -> tuple[str, str] | None:
    """(universe, code) where source is UNIVERSE:CODE, else None (a Windows drive's colon is no member)."""
    text = str(source)
    base, sep, code = text.rpartition(SEPARATOR)
    if not sep or not base or not code or "/" in code or "\\" in code or Path(text).exists():
        return None
    return (base, code) if is_universe(base) else None


def refusal(source: str | Path) -> str:
    """Why one instrument cannot be read from a universe, and how to name one."""
    names = member_names(source)
    example = member_source(str(source), names[0]) if names else member_source(str(source), "CODE")
    shown = ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
    return (f"a universe of {len(names)} instruments ({shown}), not one instrument: name one as "
            f"UNIVERSE:CODE, e.g. {example}")


def member_names(source: str | Path) -> list[str]:
    """Every instrument name a universe offers, before reading any bars (cheap: names only)."""
    kind = universe_kind(source)
    if kind == "wide":
        return _wide_columns(_wide_path(source)) or []
    if kind == "vipdoc":
        return [p.stem.lower() for p in _vipdoc_files(Path(source))]
    if kind == "folder":
        return [p.stem for p in _folder_files(Path(source))]
    return []


# ---------------------------------------------------------------- loading


def universe_job(source: str | Path, filters: UniverseFilters | None = None,
                 cancel: CancelToken | None = None) -> Generator[Progress, None, Universe]:
    """Import every instrument of a universe; yields Progress, returns the Universe (partial if cancelled)."""
    filters = filters or UniverseFilters()
    kind = universe_kind(source)
    if kind is None:
        raise DataImportError(source, None, None, "not a universe: expected a TDX vipdoc folder, a folder of "
                              "daily-bar files or a wide close table (a date column and one per instrument)")
    label = str(source)
    universe = Universe(source=label, kind=kind, tables=[])
    readers = _readers(source, kind, label)
    kept = [(name, read) for name, read in readers if filters.keeps_name(name)]
    universe.skipped += [(name, "code prefix not chosen") for name, _ in readers if not filters.keeps_name(name)]
    every = max(1, len(kept) // PROGRESS_STEPS)
    for done, (name, read) in enumerate(kept, start=1):
        if cancel is not None and cancel.cancelled:
            universe.cancelled = True
            break
        try:
            table = _within(read(), filters)
        except DataImportError as error:  # the first line without the file, which the error names apart
            universe.errors.append(UniverseError(error.file, str(error).split("\n")[0][len(error.file):]
                                                 .lstrip(":, ")))
        else:
            if len(table.frame) < max(filters.min_rows, 1):
                universe.skipped.append((name, f"{len(table.frame)} bars in the date range, "
                                               f"fewer than {filters.min_rows}"))
            else:
                universe.tables.append(table)
        if done % every == 0 or done == len(kept):
            yield Progress(done, len(kept), name)
    return universe


def load_universe(source: str | Path, filters: UniverseFilters | None = None, *,
                  cancel: CancelToken | None = None, progress: Callable[[Progress], None] | None = None) -> Universe:
    """universe_job driven to its end (scripts, the CLI)."""
    return run_to_end(universe_job(source, filters, cancel), progress)


def load_member(universe: str, code: str, *, adjust: bool = True, market: str | None = None) -> BarTable:
    """One instrument of a universe (UNIVERSE:CODE), read without touching the others."""
    kind = universe_kind(universe)
    if kind == "wide":
        return _read_wide(universe, code, market)
    if kind == "vipdoc":
        path = next((p for p in _vipdoc_files(Path(universe)) if p.stem.lower() == code.lower()), None)
    else:
        path = next((p for p in _folder_files(Path(universe)) if p.stem == code), None)
    if path is None:
        raise DataImportError(member_source(universe, code), None, None,
                              f"no instrument {code!r} in the universe {universe}")
    return _read_file(path, member_source(universe, code), adjust=adjust, market=market)


def expand_sources(sources: list[str]) -> tuple[list[str], list[UniverseError]]:
    """Datasets with each universe replaced by its instruments that import (the errors listed aside)."""
    out: list[str] = []
    errors: list[UniverseError] = []
    for source in sources:
        if split_member(source) is None and is_universe(source):
            universe = load_universe(source)
            out += universe.sources()
            errors += universe.errors
        else:
            out.append(source)
    return out, errors


def _readers(source: str | Path, kind: str, label: str) -> list[tuple[str, Callable[[], BarTable]]]:
    """(instrument, read it) for every member, so filters act on names before any file is read."""
    if kind == "wide":
        grid = _wide_grid(_wide_path(source))  # read once, not once per column
        return [(name, lambda n=name: _read_wide(source, n, None, grid)) for name in member_names(source)]
    files = _vipdoc_files(Path(source)) if kind == "vipdoc" else _folder_files(Path(source))
    return [(p.stem.lower() if kind == "vipdoc" else p.stem,
             lambda p=p: _read_file(p, member_source(label, p.stem.lower() if kind == "vipdoc" else p.stem)))
            for p in files]


def _read_file(path: Path, source: str, *, adjust: bool = True, market: str | None = None) -> BarTable:
    if path.suffix.lower() == ".day":
        return read_day_file(path, source=source, market=market)
    table = load_bars(path, adjust=adjust, market=market)
    table.source = source
    return table


def _within(table: BarTable, filters: UniverseFilters) -> BarTable:
    """The table cut to the filters' date range (a new frame and fingerprint when it was cut)."""
    if filters.start is None and filters.end is None:
        return table
    frame = table.frame.loc[filters.start:filters.end]
    if len(frame) != len(table.frame):
        table.frame, table.fingerprint = frame, _fingerprint(frame)
    return table


# ---------------------------------------------------------------- TDX vipdoc


def _vipdoc_folders(root: Path) -> list[Path]:
    return [root / m / "lday" for m in VIPDOC_MARKETS if (root / m / "lday").is_dir()]


def _vipdoc_files(root: Path) -> list[Path]:
    """The stock and index .day files under sh/ sz/ bj/ lday/, by code."""
    files = [p for folder in _vipdoc_folders(root) for p in sorted(folder.glob("*.day"))]
    return [p for p in files if cn_code_kind(p.stem) in ("stock", "index")]


def cn_code_kind(code: str) -> str | None:
    """"stock" or "index" for an exchange-prefixed A-share code (sh600000, sz399001), else None."""
    code = code.lower()
    market, digits = code[:2], code[2:]
    if market not in _CODE_KINDS or len(digits) != 6 or not digits.isdigit():
        return None
    stocks, indices = _CODE_KINDS[market]
    if digits.startswith(indices):
        return "index"
    return "stock" if digits.startswith(stocks) else None


def read_day_file(path: str | Path, *, source: str | None = None, market: str | None = None) -> BarTable:
    """A TDX .day file as a BarTable (prices / 100, amount in currency, volume in shares), validated."""
    path = Path(path)
    label = source or str(path)
    try:
        size = path.stat().st_size
        if size == 0 or size % DAY_DTYPE.itemsize:
            raise DataImportError(path, None, None, f"not a TDX day file: {size} bytes is not a whole "
                                  f"number of {DAY_DTYPE.itemsize}-byte records" if size else "the file is empty")
        records = np.fromfile(path, dtype=DAY_DTYPE)
    except OSError as exc:
        raise DataImportError(path, None, None, f"cannot read the file: {exc.strerror}") from None
    dates = pd.to_datetime(records["date"].astype(np.int64).astype(str), format="%Y%m%d", errors="coerce")
    frame = pd.DataFrame({k: records[k].astype(np.float64) / 100.0 for k in ("open", "high", "low", "close")},
                         index=pd.DatetimeIndex(dates, name="date"))
    frame["volume"] = records["volume"].astype(np.float64)
    frame["amount"] = records["amount"].astype(np.float64)
    code = path.stem.lower()
    return _checked(frame.reindex(columns=list(COLUMNS)), str(path), label, code, market or "cn",
                    ["open", "high", "low", "close", "volume", "amount"], record="record")


# ---------------------------------------------------------------- wide close tables


def _wide_path(source: str | Path) -> Path:
    universes = {s.name: s for s in samples.list_universes()}
    return universes[source].path if isinstance(source, str) and source in universes else Path(source)


def _wide_columns(path: Path) -> list[str] | None:
    """The instrument columns of a wide close table (a date column, no OHLC, two or more numeric
    columns), else None. Reads only the first lines."""
    if path.suffix.lower() not in WIDE_SUFFIXES:
        return None
    try:
        with path.open("rb") as f:
            head = f.read(16384).decode("utf-8-sig", errors="replace")
    except OSError:
        return None
    try:
        rows = list(csv.reader(io.StringIO(head), delimiter="\t" if "\t" in head.split("\n")[0] else ","))
    except csv.Error:  # a stray carriage return or NUL: no wide table; the bar importer says what is wrong
        return None
    if len(rows) < 2:
        return None
    header = [cell.strip() for cell in rows[0]]
    keys = [canonical_column(cell) for cell in header]
    if keys.count("date") != 1 or any(k in ("open", "high", "low", "close", "adjclose") for k in keys):
        return None
    names = [h for h, k in zip(header, keys) if k is None and h]
    # Ragged starts leave the first rows of late listers empty: empty cells are fine, text is not.
    cells = pd.DataFrame(rows[1:-1] or rows[1:]).reindex(columns=[header.index(h) for h in names])
    cells = cells.fillna("").apply(lambda col: col.str.strip())
    numbers = cells.apply(lambda col: pd.to_numeric(col, errors="coerce"))
    if len(names) < 2 or (numbers.isna() & (cells != "")).any().any() or numbers.isna().all().all():
        return None
    return names


def _read_wide(source: str | Path, column: str, market: str | None, grid: pd.DataFrame | None = None) -> BarTable:
    """One column of a wide close table: close only (OHLC, volume missing, never invented); leading and
    trailing empty cells are days before it listed or after it stopped, not bars."""
    path = _wide_path(source)
    label = member_source(str(source), column)
    known = {s.name: s.market for s in samples.list_universes()}.get(str(source))
    grid = _wide_grid(path) if grid is None else grid
    if column not in grid.columns[1:]:
        raise DataImportError(label, None, None, f"no column {column!r} in {path}")
    text = grid[column].str.strip()
    close = pd.to_numeric(text, errors="coerce")
    bad = close.isna() & ~text.str.lower().isin({"", "nan", "na", "null", "none", "-", "--", "#n/a"})
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataImportError(path, i + 2, column, f"cannot read {text.iloc[i]!r} as a number")
    dates = pd.to_datetime(grid.iloc[:, 0].str.strip(), errors="coerce", format="mixed")
    if dates.isna().any():
        i = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise DataImportError(path, i + 2, str(grid.columns[0]), f"cannot read {grid.iloc[i, 0]!r} as a date")
    listed = close.notna().to_numpy()
    if not listed.any():
        raise DataImportError(path, None, column, "no closes in this column")
    first, last = np.flatnonzero(listed)[[0, -1]]
    frame = pd.DataFrame({"close": close.to_numpy(dtype=np.float64)},
                         index=pd.DatetimeIndex(dates, name="date"))
    inside = frame.iloc[first:last + 1]
    holes = int(inside["close"].isna().sum())
    frame = inside.dropna().reindex(columns=list(COLUMNS))
    market = market or known or ("cn" if _CN_CODE.search(column) else "unknown")
    table = _checked(frame, str(path), label, column, market, ["close"], record="line", first_line=first + 2)
    if holes:
        table.warnings.insert(0, ImportIssue(None, column, f"{holes} empty cell(s) between its first and last "
                                             "close: no bar on those days"))
    return table


def _wide_grid(path: Path) -> pd.DataFrame:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataImportError(path, None, None, f"cannot read the file as UTF-8 text ({exc})") from None
    sep = "\t" if "\t" in text.split("\n", 1)[0] else ","
    try:
        grid = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:  # past the lines detection read
        raise DataImportError(path, None, None, f"cannot read the file as a table ({exc})") from None
    grid.columns = [str(c).strip() for c in grid.columns]
    return grid


# ---------------------------------------------------------------- validation shared by both readers


def _checked(frame: pd.DataFrame, file: str, label: str, instrument: str, market: str, present: list[str],
             record: str, first_line: int = 1) -> BarTable:
    """Errors for what makes bars wrong (bad dates, non-positive prices, duplicates, high < low on more
    than a stray bar), warnings for gaps; rows named by their record (.day) or line (table) number."""
    number = np.arange(first_line, first_line + len(frame))  # rows of the file, before sorting
    prices = [c for c in ("open", "high", "low", "close") if c in present]
    checks = [(frame.index.isna(), "unreadable date"),
              ((frame[prices].to_numpy() <= 0).any(axis=1), "non-positive price"),
              (frame.index.duplicated(keep="first"), "duplicate date")]
    if "high" in present:
        wrong = (frame["high"] < frame["low"]).to_numpy()
        if wrong.sum() > HIGH_BELOW_LOW_TOLERATED * len(frame):
            checks.append((wrong, "high below low"))
    for bad, reason in checks:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataImportError(file, None, None, f"{record} {number[i]}: {reason} "
                                  f"({int(bad.sum())} {record}s in all)")
    order = np.argsort(frame.index.to_numpy(), kind="stable")
    frame, number = frame.iloc[order], number[order]
    days = np.diff(frame.index.to_numpy()).astype("timedelta64[D]").astype(int)
    rows = np.flatnonzero(days > GAP_DAYS) + 1
    warnings = [ImportIssue(int(number[i]), None, f"{days[i - 1]} calendar days since the previous bar "
                            f"({_iso(frame.index[i - 1])}): {GAP_NOTE}", _iso(frame.index[i])) for i in rows]
    missing = [c for c in COLUMNS if c not in present]
    return BarTable(frame=frame, present=list(present), derived=[], missing=missing, warnings=warnings,
                    source=label, instrument=instrument, market=market, fingerprint=_fingerprint(frame))


def _is_gap(issue: ImportIssue) -> bool:
    return issue.message.endswith(GAP_NOTE)


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FILE_SUFFIXES
                  and not p.name.startswith("."))


def _iso(day: pd.Timestamp) -> str:
    return f"{day:%Y-%m-%d}"
