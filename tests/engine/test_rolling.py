"""Rolling retraining (issue 16): a retrain never trains, validates or selects on a day it later scores, and
every retrain is in the history under the rolling run that made it (its parent_run; lineage: source -> rolling ->
retrains)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pandas as pd

from engine import cli
from engine.data import load_bars
from engine.events import run_to_end
from engine.jobs.rolling import rolling_job
from engine.store import RunStore

TINY = ["--set", "d_model=32", "--set", "n_layers=2", "--set", "n_heads=2", "--set", "kv_lora_rank=16",
        "--set", "qk_nope_head_dim=8", "--set", "qk_rope_head_dim=8", "--set", "v_head_dim=8",
        "--set", "ffn_hidden=64"]
START, END = "2018-06-01", "2018-06-29"


def test_each_retrain_ends_before_the_block_it_scores(tmp_path):
    db = tmp_path / "runs.db"
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli.main(["--db", str(db), "--json", "train-price", "--data", "spx", "--start", "2012-01-01",
                         "--preset", "tiny", *TINY, "--max-steps", "4", "--batch-size", "16", "--seed", "5"])
    assert code == 0
    source = json.loads(buf.getvalue())["run_id"]
    bars = load_bars("spx").frame
    dates = bars.loc[START:END].index
    every = (len(dates) + 1) // 2  # two blocks over the forward period
    store = RunStore(db)
    report = run_to_end(rolling_job(source, "spx", every=every, start=START, end=END, store=store))
    assert report.status == "finished" and len(report.blocks) == 2
    assert [b["start"] for b in report.blocks] == [f"{dates[0]:%Y-%m-%d}", f"{dates[every]:%Y-%m-%d}"]
    assert report.blocks[-1]["end"] == f"{dates[-1]:%Y-%m-%d}"

    for k, block in enumerate(report.blocks):
        first_scored = pd.Timestamp(block["start"])
        previous_day = bars.index[bars.index < first_scored][-1]
        assert block["train_end"] == f"{previous_day:%Y-%m-%d}"  # cut at the bar before the block
        (retrain,) = block["runs"]
        record = store.get_run(retrain)
        assert record["kind"] == "price" and record["status"] == "finished" and retrain != source
        assert record["parent_run"] == report.run_id  # lineage: source -> rolling -> this retrain
        data, split = record["config"]["data"], record["config"]["split"]
        assert data["end"] == block["train_end"]  # no later bar was even loaded
        assert pd.Timestamp(data["val_end"]) < first_scored and pd.Timestamp(data["train_end"]) < first_scored
        for part in ("train", "val"):  # the last target day any training or validation window reads
            assert pd.Timestamp(split[part][1]) < first_scored, (k, part, split)
        assert split["val"][1] == block["train_end"]  # up to the bar before the block: nothing left unused
        if k:  # an expanding window: the retrain learns from the block the previous model scored
            assert block["train_end"] == report.blocks[k - 1]["end"]

    rolling = store.get_run(report.run_id)
    assert rolling["kind"] == "rolling" and rolling["status"] == "finished"
    assert rolling["parent_run"] == source and rolling["config"]["source"] == source
    assert [b["runs"] for b in rolling["metrics"]["blocks"]] == [b["runs"] for b in report.blocks]
    retrains = {b["runs"][0] for b in report.blocks}
    assert retrains <= {r["run_id"] for r in store.list_runs(kind="price")}
    assert set(rolling["metrics"]) >= {"rolling", "train_once"}
