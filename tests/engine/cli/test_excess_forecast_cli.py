"""`forecast` of a run trained on excess returns (--target excess) says so: the JSON names the target and
gives the network's h-day excess log returns; its prices are the close moved by them (the universe flat)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from engine.data.universe import member_source
from tests.engine.cli.test_evaluate_cli import call
from tests.engine.cli.test_universe_evaluate_cli import planted_returns
from tests.engine.helpers import TINY_PRICE_ARGS


def test_excess_run_forecast_is_labelled_excess_with_its_returns(tmp_path):
    dates = pd.bdate_range("2016-01-01", periods=400)
    closes = 20 * np.exp(np.cumsum(planted_returns(5, len(dates), 7), axis=0))
    pd.DataFrame(closes, index=pd.Index(dates, name="Date"), columns=[f"S{k}" for k in range(5)]).to_csv(
        tmp_path / "u.csv")
    db = tmp_path / "runs.db"
    code, out = call(db, "--json", "train-price", "--data", str(tmp_path / "u.csv"), "--preset", "tiny",
                     *TINY_PRICE_ARGS, "--target", "excess", "--max-steps", "2", "--batch-size", "8")
    assert code == 0, out
    run = json.loads(out)["run_id"]
    member = member_source(str(tmp_path / "u.csv"), "S2")
    code, out = call(db, "--json", "forecast", "--run", run, "--data", member)
    assert code == 0, out
    fc = json.loads(out)
    assert fc["target"] == "excess" and len(fc["returns"]) == len(fc["prices"]) == 7
    np.testing.assert_allclose(fc["prices"], closes[-1, 2] * np.exp(fc["returns"]), rtol=1e-9)
    code, text = call(db, "forecast", "--run", run, "--data", member)
    assert code == 0 and "excess over the universe's mean return" in text.splitlines()[0]
