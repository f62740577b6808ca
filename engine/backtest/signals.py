"""Signals CSV: one row per date with the close, position, regime and forecast, safe for spreadsheets.

Written atomically (a temporary file in the target's folder, then os.replace), so an
interrupted export never leaves a half-written file. UTF-8 with a BOM so spreadsheet programs
read Chinese instrument names correctly. Text cells that a spreadsheet would evaluate as a
formula get a leading single quote; numbers stay numbers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from engine.atomic import atomic_write
from engine.config import HORIZON

BANDS = ("q10", "q90")  # the 10 % and 90 % quantile prices next to the median pred_t*
COLUMNS = (
    ["date", "close", "instrument", "position", "exposure", "regime"]
    + [f"pred_t{h}" for h in range(1, HORIZON + 1)]
    + [f"{band}_t{h}" for band in BANDS for h in range(1, HORIZON + 1)]
    + ["run_id", "checkpoint_sha256"]
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: pd.Series) -> pd.Series:
    """Text cells with a leading quote where a spreadsheet would read a formula."""
    text = text.fillna("").astype(str)
    return text.mask(text.str.startswith(FORMULA_STARTS), "'" + text)


def signals_table(frame: pd.DataFrame, instrument: str, run_id: str, checkpoint_sha: str) -> pd.DataFrame:
    """The CSV's columns from a run_backtest frame (pred_h, and q10_h / q90_h where the backtest job
    added them); missing forecasts and quantiles (a point head has none) are empty cells."""
    table = pd.DataFrame({
        "date": frame.index.strftime("%Y-%m-%d"),
        "close": frame["close"].to_numpy(dtype=float),
        "instrument": instrument,
        "position": frame["position"].astype(int).to_numpy(),
        "exposure": frame["exposure"].astype(float).to_numpy(),
        "regime": frame["regime"].to_numpy() if "regime" in frame else "",
    })
    for name in ("pred", *BANDS):
        for h in range(1, HORIZON + 1):
            column = f"{name}_{h}"
            table[f"{name}_t{h}"] = frame[column].to_numpy(dtype=float) if column in frame else float("nan")
    table["run_id"], table["checkpoint_sha256"] = run_id, checkpoint_sha
    for name in ("date", "instrument", "regime", "run_id", "checkpoint_sha256"):
        table[name] = neutralise(table[name])
    return table[COLUMNS]


def export_signals(frame: pd.DataFrame, path: str | Path, *, instrument: str, run_id: str,
                   checkpoint_sha: str) -> int:
    """Write the signals of a backtest frame (run_backtest's) to path; returns the row count."""
    path = Path(path)
    table = signals_table(frame, instrument, run_id, checkpoint_sha)
    with atomic_write(path, "w", encoding="utf-8-sig", newline="") as fh:
        # RFC 4180 line ends, so a cell holding CR or LF gets quoted
        table.to_csv(fh, index=False, na_rep="", lineterminator="\r\n")
    return len(table)


__all__ = ["BANDS", "COLUMNS", "export_signals", "neutralise", "signals_table"]
