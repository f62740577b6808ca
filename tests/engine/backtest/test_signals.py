"""Signals CSV: one row per date, spreadsheet-safe text, numbers as numbers, atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from engine.backtest import export_signals, run_backtest
from engine.backtest.signals import COLUMNS
from engine.config import BacktestConfig


@pytest.fixture
def frame() -> pd.DataFrame:
    days = pd.bdate_range("2024-01-01", periods=30)
    close = pd.Series(100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 30))), index=days)
    predicted = pd.DataFrame(np.outer(close, np.linspace(0.99, 1.03, 7)), index=days)
    predicted.iloc[0, 1] = -1.5  # a negative number must stay a number
    positions = pd.Series(np.arange(30) % 11, index=days)
    return run_backtest(close, positions, BacktestConfig(), predicted=predicted).frame


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "exports"
    out.mkdir()
    return out


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False)


def test_one_row_per_date_with_the_documented_columns(frame, folder):
    path = folder / "signals.csv"
    rows = export_signals(frame, path, instrument="上证指数", run_id="run-1", checkpoint_sha="ab" * 32)
    table = read(path)
    assert rows == len(frame) == len(table)
    assert list(table.columns) == COLUMNS
    assert table["date"].tolist() == frame.index.strftime("%Y-%m-%d").tolist()
    assert table["position"].tolist() == frame["position"].tolist()
    assert table["instrument"].iloc[0] == "上证指数" and table["checkpoint_sha256"].iloc[0] == "ab" * 32
    assert table["pred_t2"].iloc[0] == -1.5
    np.testing.assert_allclose(table["pred_t7"], frame["pred_7"], rtol=1e-15)


def test_the_close_follows_the_date_so_forecasts_can_be_checked(frame, folder):
    path = folder / "signals.csv"
    export_signals(frame, path, instrument="SSE", run_id="r", checkpoint_sha="s")
    table = read(path)
    assert list(table.columns[:3]) == ["date", "close", "instrument"]
    np.testing.assert_allclose(table["close"], frame["close"], rtol=1e-15)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_an_export_gets_the_users_normal_file_mode(frame, folder, umask):
    previous = os.umask(umask)
    try:
        export_signals(frame, folder / "signals.csv", instrument="SSE", run_id="r", checkpoint_sha="s")
    finally:
        os.umask(previous)
    assert (folder / "signals.csv").stat().st_mode & 0o777 == 0o666 & ~umask


def test_formula_like_text_is_neutralised_but_numbers_are_not(frame, folder):
    path = folder / "signals.csv"
    frame = frame.assign(regime=["=1+1", "+x", "-x", "@SUM(A1)", "\tx", "\rx"] + ["bull"] * 24)
    export_signals(frame, path, instrument="=HYPERLINK(\"http://x\")", run_id="+run", checkpoint_sha="-sha")
    table = read(path)
    assert table["regime"].tolist()[:7] == ["'=1+1", "'+x", "'-x", "'@SUM(A1)", "'\tx", "'\rx", "bull"]
    assert table["instrument"].iloc[0] == "'=HYPERLINK(\"http://x\")"
    assert table["run_id"].iloc[0] == "'+run" and table["checkpoint_sha256"].iloc[0] == "'-sha"
    assert pd.api.types.is_float_dtype(table["pred_t2"]) and table["pred_t2"].iloc[0] == -1.5


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(frame, folder, monkeypatch):
    path = folder / "signals.csv"
    path.write_text("previous export\n")

    def broken(self, handle, **kwargs):
        handle.write("date,half a row")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        export_signals(frame, path, instrument="SSE", run_id="r", checkpoint_sha="s")
    assert path.read_text() == "previous export\n"
    assert [p.name for p in folder.iterdir()] == ["signals.csv"]


def test_a_successful_write_leaves_only_the_target(frame, folder):
    path = folder / "signals.csv"
    path.write_text("previous export\n")
    export_signals(frame, path, instrument="SSE", run_id="r", checkpoint_sha="s")
    assert [p.name for p in folder.iterdir()] == ["signals.csv"]
    assert read(path).shape == (30, len(COLUMNS))
