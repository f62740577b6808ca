"""Read the daily-bar files users actually have into one canonical table.

No configuration: the format (terminal tab export named .xls, akshare / NetEase / Yahoo CSV, .xlsx),
the encoding (UTF-8, GBK, UTF-16) and the column names are detected. Anything that would make the
bars wrong is a DataImportError naming file, line, column and reason; anything suspicious but real
becomes an ImportIssue warning. The user's file is only ever read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.data import samples

COLUMNS = ("open", "high", "low", "close", "volume", "amount", "turnover", "trades")
PRICES = ("open", "high", "low", "close")
REQUIRED = ("date", *PRICES)

# Daily price limit per market (fraction); None where the exchange has none.
DAILY_LIMITS: dict[str, float | None] = {"cn": 0.10, "us": None, "unknown": None}
MARKETS = tuple(DAILY_LIMITS)
# An A-share code: sh600000 / SZ000001 / 600000.SH, or six bare digits of the main boards (60/68,
# 00/30). Chinese headers say nothing: NetEase and the terminals export US stocks with them too.
_CN_CODE = re.compile(r"(?<![a-z0-9])(?:(?:sh|sz|bj)\d{6}|\d{6}\.(?:sh|sz|ss|bj)|[036]\d{5})(?!\d)", re.I)
MAX_REPORTED = 50  # bad rows an import error lists; the rest are counted
CN_LIMITS_SINCE = pd.Timestamp("1996-12-16")  # Shanghai/Shenzhen +-10 % limit introduced
# A real long history may hold an odd corrupt bar (SSE 1992-06-16): kept with a warning. More than
# this share of bars with high < low means swapped or misread columns: an error.
HIGH_BELOW_LOW_TOLERATED = 0.001
SPLIT_LIKE_MOVE = 0.25  # where no limit exists, a close-to-close move this large is worth a look
GAP_DAYS = 21  # calendar days; China's Spring Festival closes markets for up to 20

_ALIASES = {
    "date": ("时间", "日期", "交易日期", "date", "datetime", "time", "tradedate", "timestamp"),
    "open": ("开盘", "开盘价", "今开", "open"),
    "high": ("最高", "最高价", "high"),
    "low": ("最低", "最低价", "low"),
    "close": ("收盘", "收盘价", "close", "close/last"),
    "adjclose": ("adjclose", "adjustedclose"),
    "volume": ("成交量", "总手", "volume", "vol"),
    "amount": ("成交额", "成交金额", "金额", "amount"),
    "turnover": ("换手%", "换手率", "换手", "turnoverrate", "turnover%"),
    "trades": ("成交次数", "成交笔数", "笔数", "trades", "tradecount", "numberoftrades"),
    "code": ("股票代码", "证券代码", "代码", "code", "symbol", "ticker", "tscode"),
}
_CANONICAL = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}
_MISSING = {"", "none", "--", "-", "—", "nan", "null", "n/a", "na", "#n/a"}
_DATE = re.compile(
    r"^\s*(?:(?P<y1>\d{4})[-/.年](?P<m1>\d{1,2})[-/.月](?P<d1>\d{1,2})日?"
    r"|(?P<y2>\d{4})(?P<m2>\d{2})(?P<d2>\d{2})"
    r"|(?P<m3>\d{1,2})/(?P<d3>\d{1,2})/(?P<y3>\d{4}))(?=$|[\sT,，(（])"
)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_HEADER_SCAN = 20  # lines searched for the header row (exports may start with a title line)
# Daily bars of a century are ~25k rows / a few MB: anything far larger is tick or minute data (or
# not bars at all) and is refused before it is read, instead of freezing the app for minutes.
MAX_FILE_BYTES = 512 * 2**20
MAX_ROWS = 1_000_000


class DataImportError(ValueError):
    """The one error of the data layer: file, row (1-based line, header included), column, reason of
    the first problem; `problems` lists every bad row (at most MAX_REPORTED, `unreported` counts the
    rest) so a user fixes a file in one pass, not one row per import."""

    def __init__(self, file: str | Path, row: int | None = None, column: str | None = None,
                 reason: str = "", problems: list[ImportIssue] | None = None, unreported: int = 0) -> None:
        self.file, self.row, self.column, self.reason = str(file), row, column, reason
        self.problems = problems if problems is not None else [ImportIssue(row, column, reason)]
        self.unreported = unreported
        super().__init__(self.file, row, column, reason, problems, unreported)  # args rebuild it when pickled

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"line {self.row} (1-based, header included)")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        lines = [f"{', '.join(where)}: {self.reason}"]
        if len(self.problems) > 1 or self.unreported:
            lines += [f"  {issue_line(p)}" for p in self.problems]
        if self.unreported:
            lines.append(f"  … and {self.unreported} more")
        return "\n".join(lines)


@dataclass
class ImportIssue:
    """A warning: suspicious but possibly real (suspension, ex-rights jump, zero volume)."""

    row: int | None
    column: str | None
    message: str
    date: str | None = None


def issue_line(issue: ImportIssue) -> str:
    """`line 12 (2024-01-03) Close: reason`, as the CLI and an error's text list problems."""
    where = "line " + ("-" if issue.row is None else str(issue.row))
    where += f" ({issue.date})" if issue.date else ""
    where += f" {issue.column}" if issue.column else ""
    return f"{where}: {issue.message}"


@dataclass
class BarTable:
    frame: pd.DataFrame  # DatetimeIndex "date", ascending, unique; float64 COLUMNS, NaN where missing
    present: list[str]
    derived: list[str]
    missing: list[str]
    warnings: list[ImportIssue]
    source: str
    instrument: str
    market: str  # "cn" | "us" | "unknown"
    fingerprint: str
    adjusted: bool = False  # OHLC scaled by Adj Close / Close (volume inversely)


@dataclass
class _Raw:
    """A file as a grid of strings, before any interpretation."""

    file: str
    header: list[str]
    cells: pd.DataFrame  # data rows, str, one column per header position
    lines: np.ndarray  # 1-based line (or sheet row) of each data row
    columns: dict[str, int] = field(default_factory=dict)  # canonical name -> position

    def name(self, key: str) -> str:
        return self.header[self.columns[key]]


def load_bars(source: str | Path, *, adjust: bool = True, min_rows: int = 0,
              market: str | None = None) -> BarTable:
    """Import a bundled sample (by name) or a user's file into the canonical bar table.

    `market` is the user's word on where the instrument trades (it sets the daily limit the warnings
    check); None infers it from the sample, an exchange code in the file or its name, or Adj Close.
    """
    if market is not None and market not in MARKETS:
        raise ValueError(f"unknown market {market!r}; one of {', '.join(MARKETS)}")
    from engine.data import universe  # imports this module: a lazy import breaks the cycle

    member = universe.split_member(source)
    if member is not None:  # UNIVERSE:CODE, e.g. us12:AAPL
        bars = universe.load_member(*member, adjust=adjust, market=market)
        _check_history(len(bars.frame), min_rows, bars.source)
        return bars
    if universe.is_universe(source):
        raise DataImportError(source, None, None, universe.refusal(source))
    path, label, instrument, known = _resolve(source)
    raw = _locate_columns(_read_grid(path, label), label)
    frame, lines, issues = _parse(raw)
    _check_history(len(frame), min_rows, label)
    adjusted = adjust and "adjclose" in raw.columns and _adjust(frame)
    frame = frame.drop(columns="adjclose", errors="ignore")
    market = market or known or _market(raw, path)
    present = [c for c in COLUMNS if c in raw.columns and frame[c].notna().any()]
    derived = []
    if "amount" not in present and "volume" in present:
        frame["amount"] = frame["close"] * frame["volume"]  # estimate: traded value at the close
        derived.append("amount")
    missing = [c for c in COLUMNS if c not in present and c not in derived]
    issues += _warnings(frame, lines, raw, market)
    return BarTable(frame=frame, present=present, derived=derived, missing=missing, warnings=issues,
                    source=label, instrument=instrument, market=market,
                    fingerprint=_fingerprint(frame), adjusted=bool(adjusted))


def _check_history(rows: int, min_rows: int, label: str) -> None:
    if rows < min_rows:
        raise DataImportError(label, None, None, f"too little history: {rows} bars, at least {min_rows} needed")


def canonical_column(name: str) -> str | None:
    """The canonical key of a header cell ("收盘价" -> "close", "Adj Close" -> "adjclose"), None if unknown."""
    return _CANONICAL.get(_normal(name))


def _resolve(source: str | Path) -> tuple[Path, str, str, str | None]:
    """(path, label, instrument, market where known: a sample's)."""
    if isinstance(source, str) and source in {s.name for s in samples.list_samples()}:
        sample = samples.get_sample(source)
        return sample.path, f"sample:{source}", sample.instrument, sample.market
    path = Path(source)
    if not path.exists():
        raise DataImportError(path, None, None, "no such file (and not a bundled sample name: "
                              + ", ".join(s.name for s in samples.list_samples()) + ")")
    if not path.is_file():
        raise DataImportError(path, None, None, "not a file")
    return path, str(path), path.stem, None


# ---------------------------------------------------------------- reading the grid


def _read_grid(path: Path, label: str) -> list[list[str]]:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataImportError(label, None, None, f"the file is {size / 2**20:,.0f} MB, over the "
                                  f"{MAX_FILE_BYTES // 2**20} MB limit for daily bars: is it tick or "
                                  "minute data? Export daily bars, or split the file")
        data = path.read_bytes()
    except OSError as exc:
        raise DataImportError(label, None, None, f"cannot read the file: {exc.strerror}") from None
    if not data.strip():
        raise DataImportError(label, None, None, "the file is empty")
    if data[:4] == b"PK\x03\x04":
        return _read_xlsx(data, label)
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
        raise DataImportError(label, None, None, "legacy binary Excel 97-2003 (.xls) workbook: not "
                              "supported; save it as .xlsx or CSV, or export the terminal's text format")
    text = _decode(data, label)
    if text.lstrip()[:1] == "<":
        raise DataImportError(label, None, None, "an HTML/XML page, not a table of bars; save the "
                              "table as CSV or .xlsx")
    _check_rows(text.count("\n") - 1, label)  # minus the header
    return [row for row in csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))]


def _decode(data: bytes, label: str) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DataImportError(label, None, None, f"damaged UTF-16 text (at byte {exc.start}); "
                                  "re-save it as UTF-8") from None
    if b"\x00" in data[:4096]:
        raise DataImportError(label, None, None, "binary data (NUL bytes), not a text table of bars")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise DataImportError(label, None, None, "the text is neither UTF-8 nor GBK; re-save it as UTF-8")


def _delimiter(text: str) -> str:
    head = text.splitlines()[:_HEADER_SCAN]
    if any("\t" in line for line in head):
        return "\t"
    first = next((line for line in head if line.strip()), "")
    return ";" if first.count(";") > first.count(",") else ","


def _read_xlsx(data: bytes, label: str) -> list[list[str]]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        rows = list(itertools.islice(book.worksheets[0].iter_rows(values_only=True), MAX_ROWS + 2))
    except Exception as exc:  # openpyxl raises many types for a damaged workbook
        raise DataImportError(label, None, None, f"not a readable .xlsx workbook ({exc})") from None
    _check_rows(len(rows) - 1, label)
    grid = pd.DataFrame(rows, dtype=object)
    return grid.where(grid.notna(), "").astype(str).to_numpy().tolist()


def _check_rows(rows: int, label: str) -> None:
    if rows > MAX_ROWS:
        raise DataImportError(label, None, None, f"over {MAX_ROWS:,} rows: far more than daily bars "
                              "(tick or minute data?); export daily bars, or split the file")


def _normal(name: str) -> str:
    """Header name without a bracketed unit ("成交量(手)"), spaces or punctuation, in lower case."""
    base = re.sub(r"[(（\[【][^)）\]】]*[)）\]】]", "", name)
    return re.sub(r"[\s_\-.\ufeff\"'*]", "", base).lower()


def _locate_columns(grid: list[list[str]], label: str) -> _Raw:
    """Find the header (the first row naming two known columns), map columns, cut the data rows."""
    for top, row in enumerate(grid[:_HEADER_SCAN]):  # noqa: B007 (top is the header row below)
        keys = [_CANONICAL.get(_normal(cell)) for cell in row]
        if sum(k is not None for k in keys) >= 2:
            break
    else:
        raise DataImportError(label, None, None, f"no header row in the first {_HEADER_SCAN} lines: "
                              "expected column names such as 日期/Date, 开盘/Open, 收盘/Close (if the "
                              "names look garbled, the text is in an encoding other than UTF-8/GBK)")
    header = [cell.strip().lstrip("\ufeff") for cell in grid[top]]
    columns: dict[str, int] = {}
    for pos, key in enumerate(keys):
        if key and key not in columns:
            columns[key] = pos
    absent = [k for k in REQUIRED if k not in columns]
    if absent:
        raise DataImportError(label, top + 1, None, f"missing required column(s) {', '.join(absent)}; "
                              f"the header has: {', '.join(h for h in header if h)}")
    cells, lines = _data_rows(grid[top + 1:], top + 2, len(header), label)
    return _Raw(file=label, header=header, cells=cells, lines=lines, columns=columns)


def _data_rows(rows: list[list[str]], first_line: int, width: int, label: str
               ) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows as a string frame of the header's width; blank lines and a trailing text footer dropped."""
    grid = np.array(list(itertools.zip_longest(*rows, fillvalue="")), dtype=object).T  # ragged -> padded
    cells = pd.DataFrame(grid).astype(str) if rows else pd.DataFrame()
    lines = np.arange(first_line, first_line + len(cells))
    if cells.shape[1] > width:
        extra = (cells.iloc[:, width:].apply(lambda col: col.str.strip()) != "").any(axis=1).to_numpy()
        if extra.any():
            i = int(np.flatnonzero(extra)[0])
            n = int((cells.iloc[i].str.strip() != "").to_numpy().nonzero()[0].max()) + 1
            raise DataImportError(label, int(lines[i]), None, f"{n} fields but the header has {width}; "
                                  "unquoted thousands separators (1,260) or a stray delimiter?")
    cells = cells.reindex(columns=range(width), fill_value="")
    filled = (cells.apply(lambda col: col.str.strip()) != "").to_numpy()
    footer = (filled.sum(axis=1) == 1) & ~cells.iloc[:, 0].str.contains(r"\d").to_numpy()
    keep = filled.any(axis=1)
    tail = len(footer) - np.argmin(footer[::-1]) if len(footer) and not footer.all() else 0
    keep[tail:] = False  # e.g. the terminal's "数据来源:通达信" line
    if not keep.any():
        raise DataImportError(label, None, None, "no data rows below the header")
    return cells[keep].reset_index(drop=True), lines[keep]


# ---------------------------------------------------------------- values


@dataclass
class _Problems:
    """Bad rows found so far: the first MAX_REPORTED of each check, and how many there were."""

    raw: _Raw
    found: list[ImportIssue] = field(default_factory=list)
    total: int = 0

    def add(self, dates: pd.DatetimeIndex, lines: np.ndarray, mask: np.ndarray, key: str | None, reason,
            columns: np.ndarray | None = None) -> None:
        """The rows where mask is True; reason is text or a function of the row; `columns` (per row)
        name each row's column by position in `key`-less checks over several columns."""
        rows = np.flatnonzero(mask)
        self.total += len(rows)
        for i in rows[:MAX_REPORTED]:
            column = self.raw.header[columns[i]] if columns is not None else self.raw.name(key) if key else None
            day = dates[i]
            self.found.append(ImportIssue(int(lines[i]), column, reason(i) if callable(reason) else reason,
                                          None if pd.isna(day) else _iso(day)))

    def raise_any(self) -> None:
        """One DataImportError for everything found, headed by the first bad line."""
        if not self.found:
            return
        found = sorted(self.found, key=lambda p: p.row)[:MAX_REPORTED]
        first = found[0]
        raise DataImportError(self.raw.file, first.row, first.column, first.message, found,
                              self.total - len(found))


def _numbers(raw: _Raw, key: str, dates: pd.DatetimeIndex, problems: _Problems) -> np.ndarray:
    """Numbers of one column: thousands separators, %, $ and 万/亿 understood; None/--/empty -> NaN."""
    text = raw.cells.iloc[:, raw.columns[key]].str.strip()
    number = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan, copy=True)
    odd = np.flatnonzero(np.isnan(number))  # plain numbers parse in C; only the rest is cleaned
    if len(odd):
        number[odd] = _messy_numbers(text.iloc[odd])
    absent = np.zeros(len(text), dtype=bool)
    absent[odd] = text.iloc[odd].str.lower().isin(_MISSING).to_numpy()
    problems.add(dates, raw.lines, ~absent & ~np.isfinite(number), key,
                 lambda i: f"cannot read {text.iloc[i]!r} as a number")
    return number


def _messy_numbers(text: pd.Series) -> np.ndarray:
    clean = text.str.replace(r"[,\s$¥￥%]", "", regex=True)
    scale = clean.str[-1:].map({"万": 1e4, "亿": 1e8}).fillna(1.0).to_numpy(dtype=float)
    number = pd.to_numeric(clean.str.rstrip("万亿"), errors="coerce")
    return number.to_numpy(dtype=float, na_value=np.nan) * scale


def _dates(raw: _Raw, problems: _Problems) -> pd.DatetimeIndex:
    """Dates like 2009-10-15, "2009-10-15,四", 2009/10/15, 20091015, 10/15/2009, with any time after
    (NaT where unreadable, each one a problem)."""
    text = raw.cells.iloc[:, raw.columns["date"]].str.strip()
    p = text.str.extract(_DATE)
    ymd = pd.DataFrame({
        "year": p.y1.fillna(p.y2).fillna(p.y3), "month": p.m1.fillna(p.m2).fillna(p.m3),
        "day": p.d1.fillna(p.d2).fillna(p.d3)}).astype(float)
    dates = pd.DatetimeIndex(pd.to_datetime(ymd, errors="coerce"), name="date")
    problems.add(dates, raw.lines, dates.isna(), "date",
                 lambda i: f"cannot read {text.iloc[i]!r} as a date (expected e.g. 2009-10-15)")
    return dates


def _parse(raw: _Raw) -> tuple[pd.DataFrame, np.ndarray, list[ImportIssue]]:
    """Typed, validated, ascending bars; the file line of each bar; notes on rows dropped."""
    keys = [k for k in (*COLUMNS, "adjclose") if k in raw.columns]
    problems = _Problems(raw)
    dates = _dates(raw, problems)
    frame = pd.DataFrame({k: _numbers(raw, k, dates, problems) for k in keys}, index=dates)
    problems.raise_any()
    frame = frame.reindex(columns=list(COLUMNS) + (["adjclose"] if "adjclose" in keys else []))
    frame["turnover"] /= 100.0  # every export we know gives turnover in percent
    lines, issues = raw.lines, []
    if _in_lots(raw):
        frame["volume"] *= 100.0
    untraded = frame[list(PRICES)].isna().all(axis=1).to_numpy() | (
        (frame[["open", "high", "low"]].fillna(0) <= 0).all(axis=1)
        & (frame["volume"].fillna(0) == 0)).to_numpy()
    if untraded.all():
        raise DataImportError(raw.file, None, None, "no row has prices")
    if untraded.any():
        issues.append(ImportIssue(int(lines[untraded][0]), None, f"{untraded.sum()} rows without "
                                  "prices (not traded, e.g. suspended) skipped",
                                  _iso(frame.index[untraded][0])))
        frame, lines = frame[~untraded], lines[~untraded]
    _validate(raw, frame, lines)
    if not frame.index.is_monotonic_increasing:
        if not frame.index.is_monotonic_decreasing:  # newest-first is normal; a shuffle is not
            issues.append(ImportIssue(None, raw.name("date"), "rows were not in date order; sorted"))
        order = np.argsort(frame.index.to_numpy(), kind="stable")
        frame, lines = frame.iloc[order], lines[order]
    issues += _volume_in_lots(raw, frame)
    return frame, lines, issues


def _validate(raw: _Raw, frame: pd.DataFrame, lines: np.ndarray) -> None:
    problems = _Problems(raw)
    prices = [k for k in raw.columns if k in (*PRICES, "adjclose")]  # file order: first cell first
    _bad_cells(problems, frame, lines, prices, np.isnan, "missing value (a bar needs all four prices)")
    _bad_cells(problems, frame, lines, prices, lambda v: v <= 0, "non-positive price {:g}")
    amounts = [k for k in raw.columns if k in COLUMNS and k not in PRICES]
    _bad_cells(problems, frame, lines, amounts, lambda v: v < 0, "negative value {:g}")
    problems.raise_any()
    high, low = frame["high"].to_numpy(), frame["low"].to_numpy()
    if (high < low).sum() > HIGH_BELOW_LOW_TOLERATED * len(high):
        problems.add(frame.index, lines, high < low, "high", lambda i: f"high {high[i]:g} is below low "
                     f"{low[i]:g} ({raw.name('low')}) on {(high < low).sum()} of {len(high)} bars")
    dup = frame.index.duplicated(keep="first")
    first_line = pd.Series(lines, index=frame.index).groupby(level=0).first()
    problems.add(frame.index, lines, dup, "date",
                 lambda i: f"duplicate date {_iso(frame.index[i])} (also on line {first_line[frame.index[i]]})")
    problems.raise_any()


def _bad_cells(problems: _Problems, frame: pd.DataFrame, lines: np.ndarray, keys: list[str], test,
               reason: str) -> None:
    """Every row where test(values) holds, named by its first such cell in file order."""
    if not keys:
        return
    values = frame[keys].to_numpy()
    bad = test(values)
    first = np.argmax(bad, axis=1)
    positions = np.array([problems.raw.columns[k] for k in keys])[first]
    problems.add(frame.index, lines, bad.any(axis=1), None,
                 lambda i: reason.format(values[i, first[i]]), columns=positions)


def _volume_in_lots(raw: _Raw, frame: pd.DataFrame) -> list[ImportIssue]:
    """成交量 without a unit: akshare gives lots, NetEase shares; amount / close tells which."""
    if not {"volume", "amount"} <= raw.columns.keys() or not _CJK.search(raw.name("volume")) or _in_lots(raw):
        return []
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = (frame["amount"] / (frame["close"] * frame["volume"])).to_numpy()
    ratios = ratios[np.isfinite(ratios)]
    ratio = float(np.median(ratios)) if len(ratios) else float("nan")
    if not 50 < ratio < 200:
        return []
    frame["volume"] *= 100.0
    return [ImportIssue(None, raw.name("volume"), "volume read as lots of 100 shares (amount is about "
                        f"{ratio:.0f} x close x volume) and converted to shares")]


def _in_lots(raw: _Raw) -> bool:
    """The header says lots of 100 shares: 总手, 成交量(手)."""
    return "volume" in raw.columns and "手" in raw.name("volume")


def _adjust(frame: pd.DataFrame) -> bool:
    """Scale OHLC by Adj Close / Close (splits and dividends), volume inversely; False if all 1."""
    factor = (frame["adjclose"] / frame["close"]).to_numpy()
    if np.allclose(factor, 1.0, rtol=1e-9, atol=0):
        return False
    frame[list(PRICES)] = frame[list(PRICES)].to_numpy() * factor[:, None]
    frame["volume"] /= factor
    return True


def _market(raw: _Raw, path: Path) -> str:
    """cn where an A-share code names the instrument (file name or code column), us where Yahoo's
    Adj Close says so, otherwise unknown (no daily limit assumed)."""
    codes = raw.cells.iloc[:20, raw.columns["code"]].tolist() if "code" in raw.columns else []
    if any(_CN_CODE.search(text) for text in [path.name, *codes]):
        return "cn"
    return "us" if "adjclose" in raw.columns else "unknown"


# ---------------------------------------------------------------- warnings


def _warnings(frame: pd.DataFrame, lines: np.ndarray, raw: _Raw, market: str) -> list[ImportIssue]:
    return (_gaps(frame, lines) + _jumps(frame, lines, raw, market)
            + _uncontained(frame, lines, raw) + _zero_volume(frame, lines, raw))


def _issues(frame: pd.DataFrame, lines: np.ndarray, rows: np.ndarray, column: str | None,
            messages) -> list[ImportIssue]:
    return [ImportIssue(int(lines[i]), column, msg, _iso(frame.index[i])) for i, msg in zip(rows, messages)]


def _gaps(frame: pd.DataFrame, lines: np.ndarray) -> list[ImportIssue]:
    """Gaps much longer than the file's usual spacing: suspensions or missing data."""
    days = np.diff(frame.index.to_numpy()).astype("timedelta64[D]").astype(int)
    if not len(days):
        return []
    rows = np.flatnonzero(days > max(GAP_DAYS, 7 * np.median(days))) + 1
    return _issues(frame, lines, rows, None, (
        f"{days[i - 1]} calendar days since the previous bar ({_iso(frame.index[i - 1])}): "
        "a trading suspension or missing data" for i in rows))


def _jumps(frame: pd.DataFrame, lines: np.ndarray, raw: _Raw, market: str) -> list[ImportIssue]:
    """Close-to-close moves beyond the daily limit: usually an unadjusted ex-rights day or split."""
    close = frame["close"].to_numpy()
    move = np.r_[0.0, close[1:] / close[:-1] - 1]
    limit = DAILY_LIMITS.get(market)
    if limit is None:
        rows = np.flatnonzero(np.abs(move) > SPLIT_LIKE_MOVE)
        rule = f"a move over {SPLIT_LIKE_MOVE:.0%} in one day"
    else:
        since = frame.index >= CN_LIMITS_SINCE
        rows = np.flatnonzero(since & (np.abs(move) > limit + 0.01))  # +1 %: rounding of limit prices
        rule = f"beyond the +-{limit:.0%} daily limit"
    return _issues(frame, lines, rows, raw.name("close"), (
        f"close moved {move[i]:+.1%} from {_iso(frame.index[i - 1])}, {rule}: looks like an "
        "unadjusted ex-rights day or split (check the file or use adjusted prices)" for i in rows))


def _uncontained(frame: pd.DataFrame, lines: np.ndarray, raw: _Raw) -> list[ImportIssue]:
    o, h, low, c = (frame[k].to_numpy() for k in PRICES)
    tol = 1e-9 * c
    rows = np.flatnonzero((h < np.maximum(o, c) - tol) | (low > np.minimum(o, c) + tol))
    return _issues(frame, lines, rows, raw.name("high"), (
        ("high below low: " if h[i] < low[i] else "")
        + f"high/low {h[i]:g}/{low[i]:g} do not contain open/close {o[i]:g}/{c[i]:g}" for i in rows))


def _zero_volume(frame: pd.DataFrame, lines: np.ndarray, raw: _Raw) -> list[ImportIssue]:
    """One warning per run of consecutive zero-volume bars."""
    zero = (frame["volume"] == 0).to_numpy()
    if not zero.any():
        return []
    edges = np.diff(np.r_[0, zero.astype(np.int8), 0])
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return _issues(frame, lines, starts, raw.name("volume"), (
        f"zero volume on {b - a} bar(s) up to {_iso(frame.index[b - 1])}" for a, b in zip(starts, stops)))


def _iso(day: pd.Timestamp) -> str:
    return day.strftime("%Y-%m-%d")


def _fingerprint(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256(",".join(frame.columns).encode())
    digest.update(frame.index.to_numpy().astype("datetime64[ns]").view(np.int64).tobytes())
    digest.update(np.ascontiguousarray(frame.to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()
