"""Hostile inputs through the paths a user takes: checkpoints opened by the app, files imported
from any terminal (fuzzed), files far too large, and exports opened in a spreadsheet.

The low-level refusals (garbage bytes, truncation, raw pickles in load_checkpoint) live in
tests/test_checkpoint.py and the precise import errors in tests/test_io.py; here the same threats
arrive through load_price_model, resume, load_bars and export_signals."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.backtest import export_signals, run_backtest
from engine.checkpoint import CheckpointError, save_checkpoint
from engine.config import BacktestConfig, PriceModelConfig, TrainConfig, override
from engine.data import io as data_io
from engine.data import load_bars
from engine.data.io import DataImportError
from engine.events import Finished
from engine.forecast import load_price_model
from engine.models import build_price_model
from engine.store import RunStore

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "data"
TINY = override(PriceModelConfig(), d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16,
                qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64)


# ---------------------------------------------------------------- hostile checkpoints


class _Payload:
    """Unpickling this runs open(marker, "w"): the file appearing proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _evil_checkpoint(path: Path, marker: Path) -> None:
    """A file that looks like ours (format key, configs) but carries a code-running pickle."""
    model = build_price_model(TINY)
    torch.save({"format": "quant-workstation-checkpoint", "version": 1,
                "model": {**model.state_dict(), "evil": _Payload(marker)},
                "configs": {"model": {"d_model": 32}}, "extra": {"target_scale": [1.0] * 7}}, path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_checkpoint_opened_for_forecasting_runs_no_code(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "downloaded.pt"
    _evil_checkpoint(path, marker)
    with pytest.raises(CheckpointError) as caught:
        load_price_model(path)
    assert not marker.exists()
    assert "downloaded.pt" in str(caught.value) and "cannot be read safely" in str(caught.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_last_checkpoint_on_resume_fails_the_run_without_running_code(tmp_path):
    """Someone replaced a run's last.pt: resuming refuses it and the run ends failed."""
    from engine.training.trainer import fit
    from tests.engine.training.test_trainer import Toy, ToyStage

    store = RunStore(tmp_path / "runs.db")
    run_id = store.create_run("toy", dataset="toy", fingerprint="f", config={}, seed=0, device="cpu")
    marker, path = tmp_path / "pwned", tmp_path / "last.pt"
    _evil_checkpoint(path, marker)
    events = list(fit(Toy, ToyStage(), TrainConfig(max_steps=2, batch_size=8, device="cpu"),
                      store=store, run=run_id, checkpoint_dir=tmp_path, resume_from=path))
    assert not marker.exists()
    [done] = events
    assert isinstance(done, Finished) and done.status == "failed" and "last.pt" in done.error
    assert store.get_run(run_id)["status"] == "failed"


def test_checkpoint_of_another_config_names_the_mismatch(tmp_path):
    """configs say d_model 32 but the weights are of a d_model 64 network: clear, not a traceback."""
    wide = build_price_model(override(TINY, d_model=64))
    path = tmp_path / "other.pt"
    save_checkpoint(path, model_state=wide.state_dict(),
                    configs={"model": {**TINY.__dict__}}, extra={"target_scale": [1.0] * 7})
    with pytest.raises(CheckpointError, match=r"other\.pt: parameter .* has shape .*64.* in the "
                                              r"checkpoint but .*32.* in the model"):
        load_price_model(path)
    save_checkpoint(path, model_state={"w": torch.zeros(3)}, configs={"model": {}})
    with pytest.raises(CheckpointError, match=r"other\.pt: not a price-network checkpoint"):
        load_price_model(path)
    save_checkpoint(path, model_state={}, configs={"model": {"d_model": 32}, "price": {"checkpoint": "p.pt"}})
    with pytest.raises(CheckpointError, match=r"other\.pt: not a price-network checkpoint .*strategy"):
        load_price_model(path)


# ---------------------------------------------------------------- importer fuzzing


def _head(name: str, lines: int = 40) -> bytes:
    return b"".join((ASSETS / name).read_bytes().splitlines(keepends=True)[:lines])


def _xlsx(csv_bytes: bytes) -> bytes:
    book = openpyxl.Workbook()
    for row in csv.reader(io.StringIO(csv_bytes.decode("utf-8"))):
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


SEEDS = {name: _head(name) for name in (
    "aapl.csv", "spx_sp500_index.csv", "sh000001_sse_composite.csv", "sh600000_spdb_unadjusted.csv")}
SEEDS["terminal.xls"] = _head("sh000001_sse_composite.csv").decode().replace(",", "\t").encode("gbk")
SEEDS["yahoo.xlsx"] = _xlsx(_head("aapl.csv", 15))
HOSTILE_CELLS = ["1e400", "-1e308", "9" * 400, "inf", "nan", "", "--", "=cmd|'/c calc'!A0",
                 "0x1F", "１２３", "1,2,3", "\"", "2020-02-30", "99999-01-01", "\x00", "1万亿亿"]


def _cell_swap(data: bytes, draw) -> bytes:
    lines = data.split(b"\n")
    row = draw(st.integers(0, len(lines) - 1))
    cells = lines[row].split(b",")
    col = draw(st.integers(0, len(cells) - 1))
    cells[col] = draw(st.sampled_from(HOSTILE_CELLS)).encode("utf-8")
    lines[row] = b",".join(cells)
    return b"\n".join(lines)


def _duplicate_header(data: bytes, draw) -> bytes:
    lines = data.split(b"\n")
    cells = lines[0].split(b",")
    cells.insert(draw(st.integers(0, len(cells))), cells[draw(st.integers(0, len(cells) - 1))])
    return b"\n".join([b",".join(cells), *lines[1:]] if draw(st.booleans()) else [lines[0], *lines])


@st.composite
def mutated_files(draw) -> tuple[str, bytes]:
    """A real export, damaged by a few of the ways files really get damaged."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = SEEDS[name]
    for kind in draw(st.lists(st.sampled_from(
            ["truncate", "garbage", "delimiter", "unicode", "cell", "header", "random"]),
            min_size=1, max_size=4)):
        at = draw(st.integers(0, len(data)))
        if kind == "truncate":
            data = data[:at]
        elif kind == "garbage":
            data = data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]
        elif kind == "delimiter":
            old, new = draw(st.sampled_from([b",", b"\t", b";", b"\n"])), draw(
                st.sampled_from([b",", b"\t", b";", b"|", b" ", b""]))
            data = data.replace(old, new)
        elif kind == "unicode":
            text = draw(st.text(min_size=1, max_size=32))
            data = data[:at] + text.encode(draw(st.sampled_from(["utf-8", "utf-16"]))) + data[at:]
        elif kind == "cell":
            data = _cell_swap(data, draw)
        elif kind == "header":
            data = _duplicate_header(data, draw)
        else:
            data = draw(st.binary(max_size=512))
    return name, data


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated_files())
def test_importer_fuzz_only_raises_its_own_error(fuzz_dir, case):
    name, data = case
    path = fuzz_dir / name
    path.write_bytes(data)
    try:
        bars = load_bars(path)
    except DataImportError as err:
        assert err.file == str(path) and err.reason
        return
    frame = bars.frame  # an accepted file must still be a sane table of bars
    assert frame.index.is_monotonic_increasing and frame.index.is_unique and len(frame)
    prices = frame[["open", "high", "low", "close"]].to_numpy()
    assert np.isfinite(prices).all() and (prices > 0).all()


def test_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """A sparse 600 MB file (no disk used): refused by its size, with the reason, in no time."""
    path = tmp_path / "ticks.csv"
    with open(path, "wb") as f:
        f.write(SEEDS["aapl.csv"])
        f.truncate(600 * 2**20)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the huge file was read"))
    with pytest.raises(DataImportError, match=r"600 MB, over the 512 MB limit.*tick or minute"):
        load_bars(path)


@pytest.mark.parametrize("name", ["aapl.csv", "yahoo.xlsx"])
def test_too_many_rows_are_refused_with_a_message(tmp_path, monkeypatch, name):
    assert data_io.MAX_ROWS >= 100_000  # the default leaves room for centuries of daily bars
    path = tmp_path / name
    path.write_bytes(SEEDS[name])
    monkeypatch.setattr(data_io, "MAX_ROWS", 10)
    with pytest.raises(DataImportError, match="over 10 rows"):
        load_bars(path)
    monkeypatch.setattr(data_io, "MAX_ROWS", 39)  # aapl head: exactly 39 data rows still import
    if name == "aapl.csv":
        assert len(load_bars(path).frame) == 39


# ---------------------------------------------------------------- spreadsheet-safe exports


def test_hostile_file_name_cannot_become_a_formula_in_the_export(tmp_path):
    """The instrument name comes from the imported file's name; a spreadsheet must see text."""
    hostile = tmp_path / "=HYPERLINK(1)+cmd.csv"
    hostile.write_bytes(_head("aapl.csv", 60))
    bars = load_bars(hostile)
    close = bars.frame["close"]
    result = run_backtest(close, pd.Series(5, index=close.index), BacktestConfig())
    out = tmp_path / "signals.csv"
    export_signals(result.frame, out, instrument=bars.instrument, run_id="@run", checkpoint_sha="-x")
    with open(out, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    cells = [c for row in rows[1:] for c in row]
    formulas = [c for c in cells if c and c[0] in "=+-@\t\r" and not _is_number(c)]
    assert not formulas, formulas[:3]
    assert rows[1][rows[0].index("instrument")] == "'=HYPERLINK(1)+cmd"


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_fuzz_seeds_import_cleanly(tmp_path, name):
    """The fuzzer mutates files that import, so it explores near-valid input, not only noise."""
    path = tmp_path / name
    path.write_bytes(SEEDS[name])
    assert len(load_bars(path).frame) >= 14
