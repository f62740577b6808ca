"""Updating a held dataset by content: new bars are appended, a revised bar is reported and keeps its old
value (the user's file and the bundled sample are never written), a revision inside a model's training
period says so, and accepting revisions applies them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.data import load_bars
from engine.data.samples import sample_path
from engine.data.update import held_source, update_dataset


def export(frame: pd.DataFrame, path) -> str:
    """A Yahoo-style export of raw bars (what a user downloads again a month later)."""
    out = frame[["open", "high", "low", "close", "volume"]].copy()
    out.index = out.index.strftime("%Y-%m-%d")
    out.index.name = "Date"
    out.columns = ["Open", "High", "Low", "Close", "Volume"]
    out.to_csv(path)
    return str(path)


def test_new_bars_are_added_and_a_revised_bar_is_reported_not_overwritten(tmp_path):
    bars = load_bars("spx")
    frame = bars.frame
    old = export(frame.iloc[:-30], tmp_path / "spx_old.csv")
    before = (tmp_path / "spx_old.csv").read_bytes()
    newer = frame.iloc[-60:].copy()
    revised_day = newer.index[5]
    newer.loc[revised_day, "close"] += 1.25
    source = export(newer, tmp_path / "another_name.csv")
    folder = tmp_path / "data"
    report = update_dataset(old, source, folder, periods=[{"run_id": "price-1", "train_end": "2018-01-01",
                                                           "val_end": f"{frame.index[-40]:%Y-%m-%d}"}])
    assert report.added == 30 and report.instruments == 1
    assert [(r.date, r.column) for r in report.revised] == [(f"{revised_day:%Y-%m-%d}", "close")]
    assert report.revised[0].new - report.revised[0].old == 1.25 or np.isclose(
        report.revised[0].new - report.revised[0].old, 1.25)
    assert report.trained_on and report.trained_on[0]["run_id"] == "price-1"
    assert (tmp_path / "spx_old.csv").read_bytes() == before  # the user's file is untouched
    held = load_bars(held_source(old, folder))
    assert held.frame.index[-1] == frame.index[-1] and len(held.frame) == len(frame)
    assert held.frame.loc[revised_day, "close"] == frame.loc[revised_day, "close"]  # kept, not overwritten
    again = update_dataset(old, source, folder)
    assert again.added == 0 and len(again.revised) == 1  # the revision is still listed, still not applied
    accepted = update_dataset(old, source, folder, accept_revisions=True)
    assert accepted.accepted and load_bars(held_source(old, folder)).frame.loc[revised_day, "close"] == \
        newer.loc[revised_day, "close"]


def test_a_bundled_sample_is_updated_into_the_data_folder_only(tmp_path):
    before = sample_path("spdb").read_bytes()
    bars = load_bars("spdb")
    report = update_dataset("spdb", export(bars.frame.iloc[-10:], tmp_path / "spdb_tail.csv"), tmp_path / "d")
    assert report.added == 0 and report.revised == []  # the same bars under another name: nothing new
    assert sample_path("spdb").read_bytes() == before
    held = load_bars(held_source("spdb", tmp_path / "d"))
    assert held.fingerprint == bars.fingerprint and held.market == "cn"  # the held copy reads back identical
