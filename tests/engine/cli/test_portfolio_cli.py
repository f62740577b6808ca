"""backtest-portfolio end to end on the bundled us12 universe (closes only: fills at the close) with a
tiny price network trained for a few steps, then the long signals export."""

from __future__ import annotations

import pandas as pd

from tests.engine.helpers import TINY_PRICE_ARGS, cli_json


def test_backtest_portfolio_on_us12_and_export(tmp_path):
    db = tmp_path / "runs.db"
    price = cli_json(db, "train-price", "--data", "us12:AAPL", "--data", "us12:BAC", "--start", "2015-01-01",
                     "--preset", "tiny", *TINY_PRICE_ARGS, "--max-steps", "4", "--batch-size", "16", "--seed", "1")
    out = cli_json(db, "backtest-portfolio", "--run", price["run_id"], "--data", "us12", "--method", "inverse_vol",
                   "--top-k", "4", "--rebalance", "5", "--max-weight", "0.3", "--cost-bps", "10",
                   "--start", "2021-01-04")
    assert set(out["baselines"]) >= {"equal_weight", "inverse_vol", "momentum"}
    assert out["period"][0] == "2021-01-04" and out["metrics"]["fill"] == "close"  # us12 has no opens
    assert out["metrics"]["average_holdings"] <= 4 and out["risk"]["backtest"]["covariance"]["days"] > 100
    path = tmp_path / "portfolio.csv"
    exported = cli_json(db, "export-signals", "--backtest", out["backtest_id"], "--out", str(path))
    csv = pd.read_csv(path, encoding="utf-8-sig")
    assert exported["rows"] == len(csv) and csv["instrument"].nunique() == 12
    assert list(csv.columns[:3]) == ["date", "instrument", "weight"] and "q90_t7" in csv
    assert (csv["run_id"] == price["run_id"]).all()
    assert csv.groupby("date")["weight"].sum().max() <= 1 + 1e-9
    assert csv.loc[csv["rebalance"] == 1, "weight"].max() <= 0.3 + 1e-9  # held weights drift between decisions


def test_walk_forward_portfolio_never_trains_on_a_day_it_trades(tmp_path):
    """Two expanding folds on us12: each fold's price run ends its data the day before its block, the
    blocks follow each other, and every decision day of the stitched book lies inside some block."""
    from engine.store import RunStore
    from engine.training.recipe import RunRecipe

    db = tmp_path / "runs.db"
    price = cli_json(db, "train-price", "--data", "us12:AAPL", "--data", "us12:BAC", "--start", "2012-01-01",
                     "--preset", "tiny", *TINY_PRICE_ARGS, "--max-steps", "3", "--batch-size", "16", "--seed", "1")
    out = cli_json(db, "backtest-portfolio", "--run", price["run_id"], "--data", "us12", "--method", "topk",
                   "--top-k", "3", "--rebalance", "5", "--walk-forward", "2", "--walk-forward-fraction", "0.1")
    folds = out["walk_forward"]
    assert len(folds) == 2 and folds[0]["end"] < folds[1]["start"]
    store = RunStore(db)
    for fold in folds:
        (run,) = fold["runs"]
        assert run != price["run_id"]
        data = RunRecipe.from_record(store.get_run(run)).data
        assert data.end == fold["trained_to"] < fold["start"]  # the data stop before the block
        trained = {k: v for k, v in _dates(store.get_run(run)["config"]).items() if not k.endswith("test_start")}
        assert max(trained.values()) <= fold["trained_to"], trained  # resolved cut dates included
    signals = tmp_path / "wf.csv"
    cli_json(db, "export-signals", "--backtest", out["backtest_id"], "--out", str(signals))
    decided = pd.read_csv(signals, encoding="utf-8-sig").query("rebalance == 1")["date"].unique()
    inside = [any(f["start"] <= day <= f["end"] for f in folds) for day in decided]
    assert len(decided) > 10 and all(inside)
    assert out["period"][0] == folds[0]["start"] and not out["in_sample"]


def _dates(config: dict) -> dict:
    """Every recorded date of a run's config (cut dates resolved at training included), by dotted key;
    test_start is the first day after the data, not one trained on."""
    found = {}
    for key, value in config.items():
        if isinstance(value, dict):
            found.update({f"{key}.{k}": v for k, v in _dates(value).items()})
        elif isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
            found[key] = value
    return found
