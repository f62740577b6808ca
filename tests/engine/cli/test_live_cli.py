"""End of day through the CLI: a tiny price run marked live on a file, `signal` issues targets and orders and
appends the paper ledger day by day as `update` brings new bars, `ledger` agrees with the backtest of the same
days within 1 bp; CLI.md's keys; a bad book exits 2."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

from engine import cli
from engine.data import load_bars

TINY = ["--set", "d_model=32", "--set", "n_layers=2", "--set", "n_heads=2", "--set", "kv_lora_rank=16",
        "--set", "qk_nope_head_dim=8", "--set", "qk_rope_head_dim=8", "--set", "v_head_dim=8",
        "--set", "ffn_hidden=64"]


def call(db, *argv: str) -> tuple[int, dict | str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["--db", str(db), "--json", *argv])
    return code, (json.loads(out.getvalue()) if code == 0 else out.getvalue()), err.getvalue()


def export(frame, path) -> str:
    out = frame[["open", "high", "low", "close", "volume"]].copy()
    out.index = out.index.strftime("%Y-%m-%d")
    out.index.name = "Date"
    out.to_csv(path)
    return str(path)


def test_update_signal_ledger_day_by_day(tmp_path):
    db = tmp_path / "runs.db"
    frame = load_bars("spx").frame.loc["2010-01-01":]
    data = export(frame.iloc[:-3], tmp_path / "spx_export.csv")
    code, run, err = call(db, "train-price", "--data", data, "--preset", "tiny", *TINY, "--max-steps", "4",
                          "--batch-size", "16", "--seed", "3")
    assert code == 0, err
    code, live, err = call(db, "mark-live", "--run", run["run_id"], "--data", data)
    assert code == 0 and live["live"][0]["run_id"] == run["run_id"]
    code, first, err = call(db, "signal")
    assert code == 0, err
    assert first["asof"] == f"{frame.index[-4]:%Y-%m-%d}" and first["ledger_days"] == 1
    assert set(first["targets"][0]) >= {"instrument", "position"} and 0 <= first["targets"][0]["position"] <= 10
    assert all(set(o) >= {"instrument", "side", "size", "reference_price"} for o in first["orders"])
    for day in range(3, 0, -1):  # each evening a newer export arrives, under another name
        newer = export(frame.iloc[-day - 20: len(frame) - day + 1], tmp_path / f"download_{day}.csv")
        code, update, err = call(db, "update", "--data", data, "--from", newer)
        assert code == 0, err
        assert update["added"] == 1 and update["revised"] == [] and update["instruments"] == 1
        code, issued, err = call(db, "signal", "--out", str(tmp_path / "orders.csv"))
        assert code == 0, err
        assert issued["asof"] == f"{frame.index[-day]:%Y-%m-%d}" and issued["ledger_days"] == 1
    code, ledger, err = call(db, "ledger", "--run", run["run_id"])
    assert code == 0, err
    assert ledger["days"] == 4 and len(ledger["equity"]) == len(ledger["backtest_equity"]) == 4
    assert ledger["max_daily_gap_bps"] < 1.0
    assert (tmp_path / "orders.csv").read_text().startswith("asof,instrument,side,size")


def test_a_bad_book_exits_2(tmp_path):
    book = tmp_path / "book.csv"
    book.write_text("name,shares\nx,1\n")
    code, _, err = call(tmp_path / "runs.db", "signal", "--run", "price-none", "--data", "spx", "--book", str(book))
    assert code == 2 and "error" in err
