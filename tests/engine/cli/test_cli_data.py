"""`python -m engine samples|inspect`: the JSON CLI.md promises, exit codes, no tracebacks."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import cli

BAD = Path(__file__).resolve().parents[2] / "data" / "bad"
ROOT = Path(__file__).resolve().parents[3]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_samples_json_lists_every_bundled_dataset(capsys):
    code, out, err = run(capsys, "samples", "--json")
    data = json.loads(out)
    assert code == 0 and err == "" and list(data) == ["samples"]
    assert [s["name"] for s in data["samples"]] == ["sse", "spdb", "spx", "aapl", "goog", "us12"]
    assert data["samples"][-1]["instruments"] == 12 and data["samples"][0]["instruments"] == 1
    assert all({"name", "instrument", "rows", "first", "last"} <= set(s) for s in data["samples"])
    assert data["samples"][0]["rows"] == 8455 and data["samples"][0]["first"] == "1990-12-19"


def test_samples_text_is_readable(capsys):
    code, out, _ = run(capsys, "samples")
    assert code == 0 and "sse" in out and "8455 bars" in out and "2025-08-05" in out


@pytest.mark.parametrize("argv", [("--json", "inspect", "aapl", "--no-adjust"),
                                  ("inspect", "aapl", "--json", "--no-adjust")])
def test_inspect_json_summary_with_global_option_anywhere(capsys, argv):
    code, out, err = run(capsys, *argv)
    data = json.loads(out)
    assert code == 0 and err == ""
    assert {"rows", "first", "last", "columns", "warnings", "last_close"} <= set(data)
    assert (data["rows"], data["first"], data["last"]) == (3270, "2000-03-01", "2013-03-01")
    assert data["columns"] == {"present": ["open", "high", "low", "close", "volume"],
                               "derived": ["amount"], "missing": ["turnover", "trades"]}
    assert data["last_close"] == 430.47 and data["adjusted"] is False
    assert all({"row", "column", "message"} <= set(w) for w in data["warnings"])
    assert {w["date"] for w in data["warnings"]} >= {"2000-06-21", "2005-02-28"}


def test_inspect_text_names_columns_and_warnings(capsys):
    code, out, _ = run(capsys, "inspect", "spdb")
    assert code == 0 and "6119 bars 1999-11-10 .. 2025-08-05" in out
    assert "missing: turnover, trades" in out and "line 660 (2002-08-22)" in out


def test_db_option_is_accepted_before_and_after(capsys, tmp_path):
    db = str(tmp_path / "runs.db")
    assert run(capsys, "--db", db, "samples")[0] == 0
    assert run(capsys, "samples", "--db", db, "--json")[0] == 0


@pytest.mark.parametrize("name", ["high_below_low.csv", "too_short.csv", "binary_garbage.xls"])
def test_inspect_bad_file_exits_2_with_the_reason(capsys, name):
    code, out, err = run(capsys, "inspect", str(BAD / name), "--json")
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith("error: ") and str(BAD / name) in err and len(err.strip().splitlines()) == 1


def test_bad_arguments_exit_2_with_one_paragraph(capsys):
    for argv in (["inspect"], ["no-such-command"], ["inspect", "sse", "--min-rows", "many"], []):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "" and err.startswith("error: ") and "Traceback" not in err


def test_ctrl_c_exits_130_and_a_bug_exits_1(capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setitem(cli.COMMANDS, "samples", cli.Command("samples", "x", interrupted, lambda p: None))
    assert run(capsys, "samples")[0] == 130
    monkeypatch.setitem(cli.COMMANDS, "samples", cli.Command("samples", "x", broken, lambda p: None))
    code, _, err = run(capsys, "samples")
    assert code == 1 and "boom" in err


def test_module_entry_point_exits_2_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "engine", "inspect", str(BAD / "bad_date.csv")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert "line 5 (1-based, header included), column 'Date': cannot read '2020-13-45'" in proc.stderr


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_only_on_a_terminal():
    quiet = io.StringIO()
    with cli.ProgressBar(10, "train", stream=quiet) as bar:
        bar.update(5)
    assert quiet.getvalue() == ""
    tty = _Tty()
    with cli.ProgressBar(10, "train", stream=tty, width=10) as bar:
        bar.update(10, "loss 0.1")
    assert "train [##########] 10/10 loss 0.1" in tty.getvalue() and tty.getvalue().endswith("\n")


def test_inspect_market_option_sets_the_daily_limit_checked(capsys):
    code, out, _ = run(capsys, "inspect", "spdb", "--market", "us", "--json")
    data = json.loads(out)
    assert code == 0 and data["market"] == "us"
    assert not [w for w in data["warnings"] if "daily limit" in w["message"]]
    assert run(capsys, "inspect", "spdb", "--market", "mars")[0] == 2


def test_inspect_lists_every_bad_row_with_its_date(capsys, tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("Date,Open,High,Low,Close\n" + "".join(
        f"2024-01-{d:02d},1,2,0.5{'' if d % 2 else ',1'}\n" for d in range(2, 12)))
    code, out, err = run(capsys, "inspect", str(path))
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and lines[0].startswith(f"error: {path}, line 3")
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        f"line {d} (2024-01-{d:02d}) Close" for d in range(3, 12, 2)]
