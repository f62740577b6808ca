"""The importer reads the files users have, reports bad ones precisely and flags real quirks."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from engine.data import DataImportError, build_windows, list_samples, load_bars, sample_path
from engine.data.samples import DATA_DIR

BAD = Path(__file__).resolve().parents[2] / "data" / "bad"


def _readme_table() -> dict[str, tuple[int, str, str]]:
    """file name -> (rows, first, last) as assets/data/README.md states them."""
    rows = {}
    for line in (DATA_DIR / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `([^`]+)` \|[^|]+\| (\S+) \.\. (\S+) \| (\d+) \|", line)
        if m:
            rows[m.group(1)] = (int(m.group(4)), m.group(2), m.group(3))
    return rows


@pytest.fixture(scope="module")
def bars():
    """Each sample imported once, adjusted and as in the file."""
    return {(s.name, adj): load_bars(s.name, adjust=adj) for s in list_samples() for adj in (True, False)}


def test_readme_lists_every_sample():
    assert {s.path.name for s in list_samples()} == set(_readme_table())
    assert [s.name for s in list_samples()] == ["sse", "spdb", "spx", "aapl", "goog"]


@pytest.mark.parametrize("name", ["sse", "spdb", "spx", "aapl", "goog"])
def test_sample_imports_with_readme_rows_and_span(bars, name):
    rows, first, last = _readme_table()[sample_path(name).name]
    table = bars[(name, True)]
    frame = table.frame
    assert (len(frame), f"{frame.index[0]:%Y-%m-%d}", f"{frame.index[-1]:%Y-%m-%d}") == (rows, first, last)
    sample = next(s for s in list_samples() if s.name == name)
    assert (sample.rows, sample.first, sample.last) == (rows, first, last)
    assert frame.index.is_monotonic_increasing and frame.index.is_unique and frame.index.name == "date"
    assert list(frame.columns) == ["open", "high", "low", "close", "volume", "amount", "turnover", "trades"]
    assert all(frame[c].dtype == np.float64 for c in frame)
    assert table.source == f"sample:{name}" and len(table.fingerprint) == 64


def test_missing_and_derived_columns_are_honest(bars):
    sse, spx = bars[("sse", True)], bars[("spx", True)]
    assert sse.present == ["open", "high", "low", "close", "volume", "amount"] and sse.derived == []
    assert sse.missing == ["turnover", "trades"] and sse.frame[["turnover", "trades"]].isna().all().all()
    assert spx.derived == ["amount"] and spx.missing == ["turnover", "trades"]
    np.testing.assert_allclose(spx.frame["amount"], spx.frame["close"] * spx.frame["volume"])
    assert (sse.market, spx.market) == ("cn", "us")


def test_sse_volume_in_lots_becomes_shares_and_quirky_bars_warn(bars):
    sse = bars[("sse", True)]
    assert sse.frame["volume"].iloc[0] == 126_000  # "1,260" lots
    assert sse.frame["amount"].iloc[0] == 494_000
    assert sse.frame["close"].iloc[1] == pytest.approx(104.39)
    odd = [w for w in sse.warnings if "do not contain" in w.message]
    assert len(odd) == 16 and all("1991" <= w.date <= "1995-12-31" for w in odd)
    # no price limits before 1996: the early +-100% moves are history, not ex-rights days
    assert not [w for w in sse.warnings if "daily limit" in w.message]


def test_spdb_ex_rights_days_and_suspensions_warn(bars):
    spdb = bars[("spdb", True)]
    jumps = {w.date for w in spdb.warnings if "ex-rights" in w.message}
    assert {"2002-08-22", "2008-04-24", "2009-06-09", "2010-06-10", "2011-06-03",
            "2016-06-23", "2017-05-25"} <= jumps
    gaps = {w.date for w in spdb.warnings if "suspension" in w.message}
    assert {"2006-05-12", "2016-03-11"} <= gaps
    day = spdb.frame.index.get_loc(pd.Timestamp("2002-08-22"))
    line = next(w.row for w in spdb.warnings if w.date == "2002-08-22")
    assert line == day + 2  # header is line 1 and the file is oldest-first


def test_aapl_splits_warn_unless_adjusted(bars):
    splits = {"2000-06-21", "2005-02-28"}
    raw = {w.date for w in bars[("aapl", False)].warnings}
    adjusted = {w.date for w in bars[("aapl", True)].warnings}
    assert splits <= raw and not splits & adjusted
    assert bars[("aapl", True)].adjusted and not bars[("aapl", False)].adjusted
    adj = pd.read_csv(sample_path("aapl"), index_col=0)["Adj Close"]
    np.testing.assert_allclose(bars[("aapl", True)].frame["close"], adj.to_numpy())
    assert not bars[("spx", True)].adjusted  # Adj Close == Close: nothing to adjust


def _terminal_text(frame: pd.DataFrame) -> str:
    """The original design's export: tab-separated, weekday after the date, % strings, 1,234 numbers,
    turnover % and trade count columns, a trailing empty column."""
    weekday = np.array(list("一二三四五六日"))[frame.index.day_of_week]
    change = frame["close"].pct_change().fillna(0)
    cells = pd.DataFrame({
        "时间": [f"{d:%Y-%m-%d},{w}" for d, w in zip(frame.index, weekday)],
        "开盘": frame["open"].map("{:.2f}".format), "最高": frame["high"].map("{:.2f}".format),
        "最低": frame["low"].map("{:.2f}".format), "收盘": frame["close"].map("{:.2f}".format),
        "涨幅": change.map("{:.2%}".format), "振幅": "1.00%",
        "总手": (frame["volume"] / 100).map("{:,.0f}".format), "金额": frame["amount"].map("{:,.0f}".format),
        "换手%": frame["turnover"].map("{:.2f}".format), "成交次数": frame["trades"].map("{:.0f}".format),
        "": ""})
    return cells.to_csv(sep="\t", index=False, lineterminator="\r\n")


def test_terminal_export_in_gbk_round_trips(tmp_path, bars):
    frame = bars[("sse", True)].frame.iloc[-400:].copy()
    frame["turnover"] = np.round(np.linspace(0.5, 3.0, len(frame)), 2)  # percent, as the terminal writes
    frame["trades"] = np.arange(len(frame)) + 1000.0
    path = tmp_path / "600000.xls"
    path.write_bytes(_terminal_text(frame).encode("gbk"))
    back = load_bars(path)
    assert back.present == ["open", "high", "low", "close", "volume", "amount", "turnover", "trades"]
    pd.testing.assert_index_equal(back.frame.index, frame.index, check_names=False, exact=False)
    for col in ("open", "high", "low", "close", "volume", "amount", "trades"):
        np.testing.assert_allclose(back.frame[col], frame[col], rtol=1e-12, err_msg=col)
    np.testing.assert_allclose(back.frame["turnover"], frame["turnover"] / 100)
    assert back.instrument == "600000" and back.market == "cn" and back.missing == []


def test_akshare_newest_first_with_missing_tokens_and_lots(tmp_path):
    dates = pd.bdate_range("2024-01-02", periods=6)[::-1]
    close = np.array([10.6, 10.5, 10.4, 10.3, 10.2, 10.1])
    text = "日期,开盘,收盘,最高,最低,成交量,成交额,振幅,涨跌幅,换手率\n" + "".join(
        f"{d:%Y-%m-%d},{c - 0.05:.2f},{c:.2f},{c + 0.1:.2f},{c - 0.1:.2f},{1000 + i},"
        f"{(1000 + i) * 100 * c:.1f},1.9,0.9,{'--' if i == 2 else 0.5}\n"
        for i, (d, c) in enumerate(zip(dates, close)))
    path = tmp_path / "akshare.csv"
    path.write_text(text, encoding="utf-8")
    table = load_bars(path)
    assert table.frame.index.is_monotonic_increasing
    assert table.frame["close"].iloc[-1] == 10.6
    assert table.frame["volume"].iloc[-1] == 100_000  # 成交量 in lots (amount says so) -> shares
    assert any("lots of 100" in w.message for w in table.warnings)
    assert np.isnan(table.frame["turnover"].iloc[3]) and table.frame["turnover"].iloc[0] == 0.005


def test_netease_headers_and_suspended_rows(tmp_path):
    text = ("日期,股票代码,名称,收盘价,最高价,最低价,开盘价,前收盘,涨跌额,涨跌幅,换手率,成交量,成交金额\n"
            "2024-01-05,'600000,浦发银行,7.05,7.1,6.98,7.0,7.0,0.05,0.71,0.12,3500000,24675000\n"
            "2024-01-04,'600000,浦发银行,7.0,0.0,0.0,0.0,7.0,None,None,0.0,0,0\n"
            "2024-01-03,'600000,浦发银行,7.0,7.02,6.9,6.95,6.9,0.1,1.45,0.1,3000000,21000000\n")
    path = tmp_path / "netease.csv"
    path.write_text(text, encoding="gbk")
    table = load_bars(path)
    assert len(table.frame) == 2 and table.frame["volume"].iloc[0] == 3_000_000
    assert table.frame["turnover"].iloc[1] == pytest.approx(0.0012)
    skipped = [w for w in table.warnings if "skipped" in w.message]
    assert len(skipped) == 1 and skipped[0].row == 3


def test_yahoo_in_any_case_xlsx_and_utf16(tmp_path):
    src = pd.read_csv(sample_path("goog"), nrows=30)
    reference = load_bars(sample_path("goog")).frame.iloc[:30]
    lower = tmp_path / "goog_lower.csv"
    src.rename(columns=str.lower).to_csv(lower, index=False)
    book = openpyxl.Workbook()
    book.active.append(list(src.columns))
    for row in src.itertuples(index=False):
        book.active.append([pd.Timestamp(row[0]).to_pydatetime(), *row[1:]])
    xlsx = tmp_path / "goog.xlsx"
    book.save(xlsx)
    utf16 = tmp_path / "goog.txt"
    utf16.write_bytes(src.to_csv(sep="\t", index=False).encode("utf-16"))
    for path in (lower, xlsx, utf16):
        pd.testing.assert_frame_equal(load_bars(path).frame, reference, check_index_type=False)


def test_nasdaq_style_dollars_us_dates_newest_first(tmp_path):
    path = tmp_path / "HistoricalData.csv"
    path.write_text("Date,Close/Last,Volume,Open,High,Low\n"
                    "01/03/2024,$184.25,58414460,$184.22,$185.88,$183.43\n"
                    "01/02/2024,$185.64,82488670,$187.15,$188.44,$183.885\n")
    table = load_bars(path)
    assert [f"{d:%Y-%m-%d}" for d in table.frame.index] == ["2024-01-02", "2024-01-03"]
    assert table.frame["close"].tolist() == [185.64, 184.25] and table.warnings == []


def test_shuffled_rows_are_sorted_with_a_warning(tmp_path):
    path = tmp_path / "shuffled.csv"
    path.write_text("Date,Open,High,Low,Close\n2024-01-03,1,2,0.5,1\n2024-01-02,1,2,0.5,1\n"
                    "2024-01-04,1,2,0.5,1\n")
    table = load_bars(path)
    assert table.frame.index.is_monotonic_increasing
    assert [w.message for w in table.warnings] == ["rows were not in date order; sorted"]


def test_terminal_footer_and_title_lines_are_skipped(tmp_path):
    text = ("600000 浦发银行 日线 不复权\n日期\t开盘\t最高\t最低\t收盘\t成交量\n"
            "2024-01-02\t7\t7.2\t6.9\t7.1\t100\n2024-01-03\t7.1\t7.3\t7\t7.2\t100\n数据来源:通达信\n")
    path = tmp_path / "tdx.txt"
    path.write_bytes(text.encode("gbk"))
    assert len(load_bars(path).frame) == 2


def test_zero_volume_runs_warn_once_per_run(tmp_path):
    volume = [100, 0, 0, 0, 100, 0]
    text = "Date,Open,High,Low,Close,Volume\n" + "".join(
        f"2024-01-{d + 2:02d},10,11,9,10,{v}\n" for d, v in enumerate(volume))
    path = tmp_path / "zeros.csv"
    path.write_text(text)
    zero = [w for w in load_bars(path).warnings if "zero volume" in w.message]
    assert [(w.row, w.date) for w in zero] == [(3, "2024-01-03"), (7, "2024-01-07")]
    assert "3 bar(s)" in zero[0].message


def test_the_users_file_is_never_modified(tmp_path):
    path = tmp_path / "aapl.csv"
    path.write_bytes(sample_path("aapl").read_bytes())
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    load_bars(path, adjust=True)
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before


def test_fingerprint_follows_the_bars(tmp_path):
    path = tmp_path / "spx.csv"
    path.write_bytes(sample_path("spx").read_bytes())
    first = load_bars(path).fingerprint
    assert load_bars(path).fingerprint == first
    path.write_text(path.read_text().replace("2506.850098", "2506.860098"))
    assert load_bars(path).fingerprint != first


def test_min_rows_is_an_import_error():
    with pytest.raises(DataImportError, match="too little history: 2148 bars, at least 9000"):
        load_bars("goog", min_rows=9000)


# file -> (text the reason must contain, 1-based line, column as named in the file)
CORPUS = {
    "empty.csv": ("the file is empty", None, None),
    "header_only.csv": ("no data rows", None, None),
    "missing_close.csv": ("missing required column(s) close", 1, None),
    "missing_date.csv": ("missing required column(s) date", 1, None),
    "bad_number.csv": ("cannot read '12.3x' as a number", 4, "Open"),
    "bad_date.csv": ("cannot read '2020-13-45' as a date", 5, "Date"),
    "impossible_date.csv": ("cannot read '2021-02-30' as a date", 3, "Date"),
    "negative_price.csv": ("non-positive price -5", 6, "Close"),
    "zero_price.csv": ("non-positive price 0", 3, "开盘"),
    "high_below_low.csv": ("high 90 is below low 99.5", 3, "High"),
    "high_below_low.xlsx": ("high 8 is below low 9", 3, "High"),
    "duplicate_dates.csv": ("duplicate date 2020-01-03 (also on line 3)", 5, "Date"),
    "too_short.csv": ("too little history: 50 bars, one window needs 188", None, None),
    "binary_garbage.xls": ("binary data", None, None),
    "not_utf8_or_gbk.csv": ("neither UTF-8 nor GBK", None, None),
    "unquoted_thousands.csv": ("7 fields but the header has 6", 2, None),
    "legacy_excel.xls": ("legacy binary Excel 97-2003", None, None),
    "corrupt.xlsx": ("not a readable .xlsx workbook", None, None),
    "html_table.xls": ("HTML", None, None),
    "missing_price_value.csv": ("missing value", 4, "Open"),
    "infinite_value.csv": ("cannot read '1e999' as a number", 2, "High"),
    "negative_volume.csv": ("negative value -100", 7, "Volume"),
    "no_header.csv": ("no header row", None, None),
    "all_suspended.csv": ("no row has prices", None, None),
    "title_only.txt": ("no header row", None, None),
    "terminal_bad_amount.xls": ("cannot read '2,501,7x2,900' as a number", 3, "金额"),
    "ragged_missing_close.txt": ("missing value", 3, "收盘"),
}


def test_corpus_covers_every_bad_file():
    assert len(CORPUS) >= 20 and {p.name for p in BAD.iterdir()} == set(CORPUS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_file_raises_one_precise_error(name):
    reason, row, column = CORPUS[name]
    with pytest.raises(DataImportError) as caught:
        build_windows(load_bars(BAD / name))
    err = caught.value
    assert reason in err.reason and (err.row, err.column) == (row, column)
    assert err.file == str(BAD / name) and str(err).startswith(str(BAD / name))
    if row is not None:
        assert f"line {row} (1-based, header included)" in str(err)
    if column is not None:
        assert f"column '{column}'" in str(err)


def test_missing_file_and_folder_are_import_errors(tmp_path):
    with pytest.raises(DataImportError, match="no such file"):
        load_bars(tmp_path / "nope.csv")
    with pytest.raises(DataImportError, match="not a file"):
        load_bars(tmp_path)


# --- the market comes from what identifies it, never from the header language --------------------

def _netease_export(path: Path, code: str, name: str) -> Path:
    """A NetEase-style export (Chinese headers, newest first, GBK) of a stock with US-like moves: no
    daily limit, so 2000-04-24 -15.6 % and 2008-10-13 +18.6 % are real days, not ex-rights."""
    dates = pd.bdate_range("2000-01-03", "2009-12-31")
    move = np.random.default_rng(1).normal(0, 0.012, len(dates))
    move[[dates.get_loc(pd.Timestamp("2000-04-24")), dates.get_loc(pd.Timestamp("2008-10-13"))]] = -0.156, 0.186
    close = 50 * np.cumprod(1 + move)
    rows = [f"{d:%Y-%m-%d},{code},{name},{c:.2f},{c * 1.01:.2f},{c * 0.99:.2f},{c * (1 - m / 2):.2f},"
            f"{c / (1 + m):.2f},{30_000_000 + i},{(30_000_000 + i) * c:.0f}"
            for i, (d, c, m) in enumerate(zip(dates, close, move))]
    text = "日期,股票代码,名称,收盘价,最高价,最低价,开盘价,前收盘,成交量,成交金额\n" + "\n".join(rows[::-1]) + "\n"
    path.write_bytes(text.encode("gbk"))
    return path


def test_chinese_headers_alone_do_not_make_a_us_stock_an_a_share(tmp_path):
    table = load_bars(_netease_export(tmp_path / "微软.csv", "MSFT", "微软"))
    assert table.market != "cn"
    assert not [w for w in table.warnings if "daily limit" in w.message]
    assert table.frame["volume"].iloc[0] == 30_000_000  # shares stay shares (amount says so)


def test_the_users_market_choice_overrides_the_inference(tmp_path):
    path = _netease_export(tmp_path / "microsoft.csv", "MSFT", "微软")
    limits = [w.date for w in load_bars(path, market="cn").warnings if "daily limit" in w.message]
    assert {"2000-04-24", "2008-10-13"} <= set(limits)
    assert load_bars("spdb", market="us").market == "us"
    with pytest.raises(ValueError, match="market"):
        load_bars(path, market="mars")


@pytest.mark.parametrize("name,code,market", [
    ("SZ000001.csv", "MSFT", "cn"), ("sh600000_daily.csv", "x", "cn"), ("600000.SH.csv", "x", "cn"),
    ("export.csv", "'600000", "cn"), ("export.csv", "sz000001", "cn"), ("export.csv", "000001.SZ", "cn"),
    ("MSFT.csv", "MSFT", "unknown"), ("prices_202401.csv", "AAPL", "unknown")])
def test_market_is_inferred_from_the_exchange_code_or_file_name(tmp_path, name, code, market):
    assert load_bars(_netease_export(tmp_path / name, code, "名称")).market == market


def test_bundled_samples_keep_their_market():
    assert {s.name: load_bars(s.name).market for s in list_samples()} == {s.name: s.market for s in list_samples()}


# --- every bad row is reported, with its date -----------------------------------------------------

def _short_rows(path: Path, bad: int) -> Path:
    """A terminal export with `bad` rows cut short before the close (every other row)."""
    lines = ["日期\t开盘\t最高\t最低\t收盘\t成交量"]
    for i, d in enumerate(pd.bdate_range("2024-01-02", periods=2 * bad + 10)):
        short = i % 2 == 1 and i < 2 * bad
        lines.append(f"{d:%Y-%m-%d}\t7\t7.2\t6.9" + ("" if short else "\t7.1\t100"))
    path.write_bytes(("\n".join(lines) + "\n").encode("gbk"))
    return path


def test_every_bad_row_is_reported_with_its_date(tmp_path):
    path = _short_rows(tmp_path / "600000.txt", 24)
    with pytest.raises(DataImportError) as caught:
        load_bars(path)
    err = caught.value
    days = pd.bdate_range("2024-01-02", periods=58)
    assert [(p.row, p.date, p.column) for p in err.problems] == [
        (i + 2, f"{days[i]:%Y-%m-%d}", "收盘") for i in range(1, 48, 2)]
    assert err.unreported == 0
    assert (err.row, err.column, err.reason) == (3, "收盘", err.problems[0].message)
    first, *rest = str(err).splitlines()
    assert first == (f"{path}, line 3 (1-based, header included), column '收盘': "
                     "missing value (a bar needs all four prices)")
    assert len(rest) == 24 and f"line 49 ({days[47]:%Y-%m-%d})" in rest[-1]


def test_a_file_full_of_bad_rows_reports_the_first_50_and_counts_the_rest(tmp_path):
    with pytest.raises(DataImportError) as caught:
        load_bars(_short_rows(tmp_path / "600000.txt", 120))
    err = caught.value
    assert len(err.problems) == 50 and err.unreported == 70
    assert "and 70 more" in str(err) and len(str(err).splitlines()) == 52


def test_bad_numbers_in_several_columns_are_all_reported(tmp_path):
    path = tmp_path / "typos.csv"
    path.write_text("Date,Open,High,Low,Close\n2024-01-02,1,2,0.5,1x\n2024-01-03,1,2y,0.5,1\n"
                    "2024-01-04,1,2,0.5,1\n")
    with pytest.raises(DataImportError) as caught:
        load_bars(path)
    assert [(p.row, p.column, p.date) for p in caught.value.problems] == [
        (2, "Close", "2024-01-02"), (3, "High", "2024-01-03")]
