"""Universes import many instruments at once: TDX vipdoc folders, folders of files, wide close tables."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from engine.cli.core import main, resolve_data
from engine.data import DataImportError, build_windows, load_bars, sample_path
from engine.data.universe import (
    DAY_DTYPE,
    UniverseFilters,
    cn_code_kind,
    is_universe,
    load_universe,
    read_day_file,
    universe_job,
    universe_kind,
)
from engine.events import CancelToken, run_to_end


def _day_records(frame: pd.DataFrame) -> np.ndarray:
    """A frame of real bars as TDX records: prices in 0.01 units, amount float32, volume int."""
    rec = np.zeros(len(frame), dtype=DAY_DTYPE)
    rec["date"] = frame.index.strftime("%Y%m%d").astype(np.uint32)
    for k in ("open", "high", "low", "close"):
        rec[k] = np.round(frame[k].to_numpy() * 100).astype(np.uint32)
    rec["amount"] = frame["amount"].to_numpy(dtype=np.float32)
    rec["volume"] = np.round(frame["volume"].to_numpy()).astype(np.uint32)
    return rec


@pytest.fixture(scope="module")
def spdb() -> pd.DataFrame:
    return load_bars("spdb").frame.iloc[-400:]


def _vipdoc(root, spdb, codes):
    for code in codes:
        folder = root / code[:2] / "lday"
        folder.mkdir(parents=True, exist_ok=True)
        _day_records(spdb).tofile(folder / f"{code}.day")
    return root


def test_day_file_round_trips_exactly(tmp_path, spdb):
    rec = _day_records(spdb)
    rec.tofile(tmp_path / "sh600000.day")
    table = read_day_file(tmp_path / "sh600000.day")
    f = table.frame
    assert list(f.index.strftime("%Y%m%d").astype(int)) == rec["date"].tolist()
    for k in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(f[k].to_numpy(), rec[k] / 100.0)
    np.testing.assert_array_equal(f["amount"].to_numpy(dtype=np.float32), rec["amount"])
    np.testing.assert_array_equal(f["volume"].to_numpy().astype(np.int64), rec["volume"].astype(np.int64))
    assert (table.instrument, table.market, table.missing) == ("sh600000", "cn", ["turnover", "trades"])


def test_code_kinds_tell_indices_from_stocks():
    kinds = {c: cn_code_kind(c) for c in ("sh600000", "sh688981", "sh000001", "sh880001", "sh999999",
                                          "sz000001", "sz300750", "sz399001", "bj430047", "bj830799",
                                          "sh510050", "sz159915", "600000")}
    assert kinds == {"sh600000": "stock", "sh688981": "stock", "sh000001": "index", "sh880001": "index",
                     "sh999999": "index", "sz000001": "stock", "sz300750": "stock", "sz399001": "index",
                     "bj430047": "stock", "bj830799": "stock", "sh510050": None, "sz159915": None, "600000": None}


def test_vipdoc_universe_reads_stocks_and_indices_and_names_a_bad_file(tmp_path, spdb):
    root = _vipdoc(tmp_path / "vipdoc", spdb, ["sh600000", "sh000001", "sz399001", "bj430047", "sh510050"])
    (root / "sz" / "lday" / "sz000002.day").write_bytes(b"\x00" * 40)  # not whole records
    assert universe_kind(root) == "vipdoc"
    events = []
    universe = load_universe(root, progress=events.append)
    assert [t.instrument for t in universe.tables] == ["sh000001", "sh600000", "sz399001", "bj430047"]
    assert {t.market for t in universe.tables} == {"cn"}
    assert [e.file for e in universe.errors] == [str(root / "sz" / "lday" / "sz000002.day")]
    assert "32-byte records" in universe.errors[0].message
    assert (events[-1].done, events[-1].total) == (5, 5)
    one = load_bars(f"{root}:sh600000")
    pd.testing.assert_frame_equal(one.frame, universe.tables[1].frame)
    assert one.source == f"{root}:sh600000"


def test_folder_with_one_bad_file_imports_the_rest(tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    for name in ("aapl", "goog", "spx"):
        (folder / f"{name}.csv").write_bytes(sample_path(name).read_bytes())
    (folder / "broken.csv").write_text("Date,Open,High,Low,Close\n2020-01-02,1,2,0.5,x\n", encoding="utf-8")
    universe = load_universe(folder)
    assert universe.kind == "folder"
    assert sorted(t.instrument for t in universe.tables) == ["aapl", "goog", "spx"]
    assert [e.file for e in universe.errors] == [str(folder / "broken.csv")]
    assert "'x'" in universe.errors[0].message and "Close" in universe.errors[0].message
    assert universe.coverage.first == "1999-01-04" and universe.coverage.last == "2018-12-31"


def _ragged(path):
    days = pd.bdate_range("2020-01-01", periods=300)
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"Date": days.strftime("%Y-%m-%d")})
    for name, start in (("AAA", 0), ("BBB", 50), ("CCC", 120)):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(days))))
        close[:start] = np.nan
        table[name] = close
    table.loc[200, "BBB"] = np.nan  # a hole inside BBB's history
    table.to_csv(path, index=False)
    return days


def test_wide_table_with_ragged_starts(tmp_path):
    days = _ragged(tmp_path / "wide.csv")
    assert universe_kind(tmp_path / "wide.csv") == "wide"
    universe = load_universe(tmp_path / "wide.csv")
    firsts = {t.instrument: t.frame.index[0] for t in universe.tables}
    assert firsts == {"AAA": days[0], "BBB": days[50], "CCC": days[120]}
    rows = {t.instrument: len(t.frame) for t in universe.tables}
    assert rows == {"AAA": 300, "BBB": 249, "CCC": 180}  # leading empties are not bars; nor is the hole
    bbb = universe.tables[1]
    assert bbb.present == ["close"] and bbb.frame[["open", "high", "low", "volume"]].isna().all().all()
    assert "1 empty cell" in bbb.warnings[0].message
    assert universe.coverage.all_from == f"{days[120]:%Y-%m-%d}"


def test_filters_prefix_dates_and_min_history(tmp_path):
    days = _ragged(tmp_path / "wide.csv")
    filters = UniverseFilters(min_rows=190, start=f"{days[100]:%Y-%m-%d}", end=f"{days[-2]:%Y-%m-%d}",
                              prefixes=("a", "C"))
    universe = load_universe(tmp_path / "wide.csv", filters)
    assert [t.instrument for t in universe.tables] == ["AAA"]
    assert universe.tables[0].frame.index[[0, -1]].tolist() == [days[100], days[-2]]
    assert len(universe.tables[0].frame) == 199
    assert dict(universe.skipped) == {"BBB": "code prefix not chosen",
                                      "CCC": "179 bars in the date range, fewer than 190"}


def test_cancel_stops_between_files(tmp_path, spdb):
    root = _vipdoc(tmp_path / "vipdoc", spdb, [f"sh6000{i:02d}" for i in range(20)])
    token = CancelToken()
    job = universe_job(root, cancel=token)
    first = next(job)
    token.cancel()
    universe = run_to_end(job)
    assert first.done == 1 and universe.cancelled and len(universe.tables) == 1


def test_bundled_universe_loads_twelve_close_only_instruments():
    universe = load_universe("us12")
    assert [t.instrument for t in universe.tables] == ["AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JPM",
                                                      "LLY", "MRK", "PEP", "PFE"]
    assert universe.errors == [] and {len(t.frame) for t in universe.tables} == {8313}
    assert universe.coverage.first == "1990-01-02" and universe.coverage.last == "2022-12-28"
    aapl = load_bars("us12:AAPL")
    assert aapl.present == ["close"] and aapl.market == "us" and aapl.frame["close"].iloc[-1] == 125.674
    ws = build_windows(aapl)
    assert ws.mask[:3].tolist() == [0, 0, 0] and ws.mask[3] == 1  # open/high/low masked, close present
    with pytest.raises(DataImportError, match="universe of 12 instruments.*us12:AAPL"):
        load_bars("us12")


def test_single_instrument_files_are_not_universes(tmp_path):
    assert not is_universe(sample_path("aapl")) and not is_universe("sse") and is_universe("us12")
    assert not is_universe(tmp_path / "absent.csv")


def test_a_file_the_csv_module_cannot_split_is_no_universe_and_an_import_error(tmp_path):
    """A stray carriage return inside a line makes csv.reader raise csv.Error: detection says 'not a
    wide table' and the importer refuses the file with its own error, naming it."""
    path = tmp_path / "stray_cr.csv"
    path.write_bytes(b"Date,a,b\n2020-01-01,1,2\r2020-01-02,3,4\n")
    assert not is_universe(path)
    with pytest.raises(DataImportError) as err:
        load_bars(path)
    assert err.value.file == str(path)


def test_cli_inspects_a_universe_and_refuses_one_for_forecast(tmp_path, capsys):
    days = _ragged(tmp_path / "wide.csv")
    assert main(["--json", "inspect", str(tmp_path / "wide.csv"), "--min-rows", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(i["instrument"], i["rows"], i["first"]) for i in out["instruments"]] == [
        ("AAA", 300, f"{days[0]:%Y-%m-%d}"), ("BBB", 249, f"{days[50]:%Y-%m-%d}"),
        ("CCC", 180, f"{days[120]:%Y-%m-%d}")]
    assert out["errors"] == [] and out["coverage"]["instruments"] == 3 and "last_close" in out["instruments"][0]
    assert main(["forecast", "--run", "nope", "--data", "us12"]) == 2
    assert "us12:AAPL" in capsys.readouterr().err


def test_pooling_commands_expand_a_universe_to_its_instruments():
    args = argparse.Namespace(command="train-price", data=["us12", "sse"])
    resolve_data(args)
    assert args.data[:2] == ["us12:AAPL", "us12:AMD"] and len(args.data) == 13 and args.data[-1] == "sse"
