"""End to end from the CLI, as a script on a GPU server would drive it: train a tiny price network and
a strategy on a bundled series, backtest the held-out period after costs, export signals; everything
lands in the SQLite history with its lineage."""

from __future__ import annotations

import csv
import json
import sqlite3
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import cli
from engine.backtest import run_backtest
from engine.backtest.run import analytic_positions
from engine.config import QUANTILES, BacktestConfig
from engine.forecast import forecast_quantiles, load_bars_as_trained, load_price_model, model_windows
from engine.jobs.backtest import load_backtest_frame
from engine.store import RunStore
from tests.engine.helpers import TINY_PRICE_ARGS, cli_json

ROOT = Path(__file__).resolve().parents[3]

DATA = ["--data", "spx", "--start", "2011-01-01"]


def run_cli(capsys, *argv: str) -> tuple[int, dict]:
    code = cli.main(["--json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """price -> strategy -> backtest -> export, once for the module (each CLI call is a real run)."""
    db = tmp_path_factory.mktemp("cli") / "runs.db"
    results = {"db": db}

    call = partial(cli_json, db)

    results["price"] = call("train-price", *DATA, "--preset", "tiny", *TINY_PRICE_ARGS, "--max-steps", "12",
                            "--batch-size", "16", "--seed", "3")
    results["strategy"] = call("train-strategy", "--price-run", results["price"]["run_id"], *DATA,
                               "--max-steps", "12", "--batch-size", "16", "--set", "state_dim=16")
    results["inherited"] = call("train-strategy", "--price-run", results["price"]["run_id"],
                                "--max-steps", "2", "--batch-size", "16", "--set", "state_dim=16")
    results["backtest"] = call("backtest", "--run", results["strategy"]["run_id"], "--data", "spx",
                               "--cost-bps", "10")
    out = db.parent / "signals.csv"
    results["export"] = call("export-signals", "--backtest", results["backtest"]["backtest_id"],
                             "--out", str(out))
    return results


def test_price_run_is_recorded_with_metrics_series_and_best_checkpoint(pipeline):
    price = pipeline["price"]
    assert price["status"] == "finished"
    store = RunStore(pipeline["db"])
    run = store.get_run(price["run_id"])
    assert run["status"] == "finished" and run["kind"] == "price"
    assert len(store.metric_series(price["run_id"], "train/loss")) == 12
    assert store.metric_series(price["run_id"], "val/loss")
    assert store.checkpoint(price["run_id"], best=True)["path"] == price["best_checkpoint"]
    for key in ("val_loss", "mae", "mae_naive", "direction_accuracy", "skill_h1", "skill_h7"):
        assert key in price["metrics"]


def test_same_seed_gives_the_same_numbers(pipeline, tmp_path, capsys):
    code, again = run_cli(capsys, "--db", str(tmp_path / "again.db"), "train-price", *DATA,
                          "--preset", "tiny", *TINY_PRICE_ARGS, "--max-steps", "12", "--batch-size", "16",
                          "--seed", "3")
    assert code == 0
    assert again["metrics"]["val_loss"] == pipeline["price"]["metrics"]["val_loss"]
    assert again["metrics"]["mae"] == pipeline["price"]["metrics"]["mae"]


def test_lineage_price_strategy_backtest_export_is_in_the_sqlite_file(pipeline):
    con = sqlite3.connect(pipeline["db"])
    strategy_id = pipeline["strategy"]["run_id"]
    parent = con.execute("SELECT parent_run FROM runs WHERE run_id = ?", [strategy_id]).fetchone()[0]
    assert parent == pipeline["price"]["run_id"]
    bt_id = pipeline["backtest"]["backtest_id"]
    assert con.execute("SELECT run_id FROM backtests WHERE backtest_id = ?", [bt_id]).fetchone()[0] == strategy_id
    path, rows = con.execute("SELECT path, rows FROM exports WHERE backtest_id = ?", [bt_id]).fetchone()
    assert path == pipeline["export"]["path"] and rows == pipeline["export"]["rows"]


def test_price_and_strategy_runs_print_their_calendar_split(pipeline, capsys):
    price, strategy = pipeline["price"], pipeline["strategy"]
    cuts = RunStore(pipeline["db"]).get_run(price["run_id"])["config"]["data"]
    assert set(price["split"]) == {"train", "val", "test"}
    assert price["split"]["train"][0] >= "2011-01-01" and price["split"]["train"][1] <= cuts["train_end"]
    assert cuts["train_end"] < price["split"]["val"][0] and price["split"]["val"][1] <= cuts["val_end"]
    assert price["split"]["test"][0] >= cuts["test_start"]
    # stage 2 trains and validates inside the price network's validation period only
    assert strategy["split"]["train"][0] > cuts["train_end"]
    assert strategy["split"]["val"][1] <= cuts["val_end"] and strategy["split"]["test"] == price["split"]["test"]
    (block,) = strategy["features_from"]
    assert block["price_train_end"] == cuts["train_end"] < block["encoded"][0] <= block["encoded"][1]
    # without --data it inherits the price run's data and cut dates
    assert pipeline["inherited"]["split"] == strategy["split"]
    _, out = run_cli(capsys, "--db", str(pipeline["db"]), "runs", "--kind", "strategy")
    assert all(r["features_from"] == strategy["features_from"] for r in out["runs"])


def test_backtest_defaults_to_held_out_period_and_reports_baselines(pipeline):
    bt = pipeline["backtest"]
    assert set(bt["baselines"]) == {"buy_and_hold", "constant_5", "sma_crossover", "follow_forecast", "vol_target",
                                    "analytic"}  # analytic: the price network has quantiles
    for key in ("total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
                "information_ratio", "win_rate", "turnover", "exposure"):
        assert key in bt["metrics"]
    # the default period is the test split: its start lies after the training windows' targets
    assert pd.Timestamp(bt["start"]) > pd.Timestamp("2016-01-01")
    test_start = RunStore(pipeline["db"]).get_run(pipeline["price"]["run_id"])["config"]["data"]["test_start"]
    assert bt["start"] >= test_start and bt["in_sample"] is False
    assert bt["metrics"]["max_drawdown"] <= 0
    assert bt["period"] == [bt["start"], bt["end"]] and bt["metrics"]["fill"] == "next-open"
    low, high = bt["metrics"]["sharpe_ci"]
    assert low < bt["metrics"]["sharpe"] < high and 0 <= bt["metrics"]["probabilistic_sharpe"] <= 1
    assert {"delay_1_sharpe", "delay_1_total_return", "probabilistic_sharpe_vs_buy_and_hold"} <= set(bt["metrics"])


def test_the_analytic_baseline_trades_the_models_one_day_median_and_band_sigma(pipeline):
    store = RunStore(pipeline["db"])
    record = store.get_backtest(pipeline["backtest"]["backtest_id"])
    frame = load_backtest_frame(record)
    loaded = load_price_model(pipeline["price"]["run_id"], store)
    bars = load_bars_as_trained(loaded, "spx")
    ws = model_windows(loaded, bars)
    q = forecast_quantiles(loaded, ws, ws.dates.get_indexer(frame.index))
    lo, hi = QUANTILES.index(0.1), QUANTILES.index(0.9)
    sigma = (q.quantile_returns[:, 0, hi] - q.quantile_returns[:, 0, lo]) / (2 * 1.2815515655446004)
    dist = pd.DataFrame({"median": q.returns[:, 0], "sigma": sigma}, index=frame.index)
    cfg = BacktestConfig(**{k: record["config"][k] for k in ("cost_bps", "start", "end", "risk_aversion")})
    alone = run_backtest(pd.Series(ws.close, index=ws.dates), analytic_positions(dist, cfg.risk_aversion), cfg,
                         opens=bars.frame["open"], instrument=bars.instrument)
    np.testing.assert_allclose(frame["analytic_equity"], alone.frame["strategy_equity"], rtol=1e-9)


def test_an_explicit_start_before_the_test_start_is_marked_in_sample(pipeline, capsys):
    code, out = run_cli(capsys, "--db", str(pipeline["db"]), "backtest", "--run",
                        pipeline["strategy"]["run_id"], "--data", "spx", "--start", "2016-01-04")
    assert code == 0 and out["in_sample"] is True and out["period"][0] == "2016-01-04"


def test_an_instrument_without_days_after_the_test_start_exits_2(pipeline, capsys):
    code = cli.main(["--db", str(pipeline["db"]), "backtest", "--run", pipeline["strategy"]["run_id"],
                     "--data", "goog"])
    err = capsys.readouterr().err
    assert code == 2 and "goog" in err.lower() and "no days on or after the model's test start" in err


@pytest.mark.parametrize("extra, needle", [
    (["--data", "goog"], "differ from the price run"),
    (["--train-end", "2012-01-03"], "train_end 2012-01-03 differs"),
])
def test_strategy_refuses_data_or_cut_dates_the_price_run_did_not_use(pipeline, capsys, extra, needle):
    code = cli.main(["--db", str(pipeline["db"]), "train-strategy", "--price-run",
                     pipeline["price"]["run_id"], *extra, "--max-steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err


def test_exported_csv_rows_match_the_backtest_frame(pipeline):
    store = RunStore(pipeline["db"])
    frame = load_backtest_frame(store.get_backtest(pipeline["backtest"]["backtest_id"]))
    with open(pipeline["export"]["path"], encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(frame) == pipeline["export"]["rows"]
    assert [int(r["position"]) for r in rows] == frame["position"].tolist()
    assert rows[0]["date"] == f"{frame.index[0]:%Y-%m-%d}"
    assert {int(r["position"]) for r in rows} <= set(range(11))
    assert float(rows[-1]["pred_t7"]) == pytest.approx(frame["pred_7"].iloc[-1], rel=1e-9)


def test_walk_forward_from_the_cli_records_its_folds(pipeline, capsys):
    code, out = run_cli(capsys, "--db", str(pipeline["db"]), "backtest", "--run",
                        pipeline["price"]["run_id"], "--data", "spx", "--walk-forward", "2",
                        "--walk-forward-fraction", "0.1")
    assert code == 0
    assert len(out["walk_forward"]) == 2
    assert set(out["baselines"]) >= {"buy_and_hold", "follow_forecast"}
    # the pipeline's backtest was tried on the same bars before: the Sharpe ratio is deflated
    assert out["metrics"]["trials"] >= 2 and 0 <= out["metrics"]["deflated_sharpe"] <= 1
    code = cli.main(["--db", str(pipeline["db"]), "backtest", "--run", pipeline["price"]["run_id"],
                     "--data", "spx", "--walk-forward", "0"])
    assert code == 2 and "at least one fold" in capsys.readouterr().err


def test_backtest_fill_choice_reaches_the_result(pipeline, capsys):
    code, out = run_cli(capsys, "--db", str(pipeline["db"]), "backtest", "--run", pipeline["price"]["run_id"],
                        "--data", "spx", "--fill", "close", "--stamp-duty-bps", "5")
    assert code == 0 and out["metrics"]["fill"] == "close"
    assert cli.main(["--db", str(pipeline["db"]), "backtest", "--run", pipeline["price"]["run_id"],
                     "--data", "spx", "--fill", "vwap"]) == 2


def test_forecast_prints_seven_dated_prices(pipeline, capsys):
    code, out = run_cli(capsys, "--db", str(pipeline["db"]), "forecast", "--run",
                        pipeline["price"]["run_id"], "--data", "spx", "--date", "2015-06-01")
    assert code == 0
    assert out["asof"] == "2015-06-01" and len(out["dates"]) == len(out["prices"]) == 7
    assert out["dates"][0] == "2015-06-02"
    assert all(1500 < p < 2500 for p in out["prices"])  # SPX traded near 2100 then


def test_runs_lists_both_stages(pipeline, capsys):
    code, out = run_cli(capsys, "--db", str(pipeline["db"]), "runs")
    assert code == 0
    kinds = {r["kind"] for r in out["runs"]}
    assert kinds == {"price", "strategy"}
    code, out = run_cli(capsys, "--db", str(pipeline["db"]), "runs", "--kind", "strategy")
    assert {r["run_id"] for r in out["runs"]} == {pipeline[k]["run_id"] for k in ("strategy", "inherited")}


@pytest.mark.parametrize("argv, needle", [
    (["backtest", "--run", "no-such-run", "--data", "spx"], "no-such-run"),
    (["train-strategy", "--price-run", "missing", "--data", "spx"], "missing"),
    (["describe", "--preset", "tiny", "--set", "d_modle=3"], "d_modle"),
    (["train-price", "--data", "no/such/file.csv"], "file.csv"),
    (["export-signals", "--backtest", "nope", "--out", "x.csv"], "nope"),
    (["train-price", "--data", "spx", "--start", "2011-13-01"], "2011-13-01"),
    (["train-price", "--data", "spx", "--train-end", "2011-02-30"], "2011-02-30"),
    (["train-price", "--data", "spx", "--train-end", "2030-01-02"], "train_end 2030-01-02 lies outside"),
    (["train-price", "--data", "spx", "--train-end", "2015-01-02", "--val-end", "2014-01-02"],
     "must come before val_end 2014-01-02"),
    (["backtest", "--run", "r", "--data", "spx", "--data", "goog"], "one instrument"),
    (["forecast", "--run", "r", "--data", "spx", "--date", "yesterday"], "yesterday"),
])
def test_bad_input_exits_2_with_a_message_and_no_traceback(argv, needle, tmp_path, capsys):
    code = cli.main(["--db", str(tmp_path / "h.db"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and "Traceback" not in err


def test_strategy_backtest_on_a_series_too_short_for_its_walks_exits_2(pipeline, tmp_path, capsys):
    short = tmp_path / "short.csv"
    lines = (ROOT / "assets" / "data" / "spx_sp500_index.csv").read_text().splitlines()[:196]
    short.write_text("\n".join(lines) + "\n")
    code = cli.main(["--db", str(pipeline["db"]), "backtest", "--run", pipeline["strategy"]["run_id"],
                     "--data", str(short)])
    err = capsys.readouterr().err
    assert code == 2 and "195 bars" in err and "Traceback" not in err


def test_held_out_period_is_found_by_content_not_by_name(pipeline, capsys):
    """The same data named by path, or the model given as a checkpoint file, still defaults to
    the held-out test period: nothing the model trained on is scored by default."""
    db = str(pipeline["db"])
    expected = pipeline["backtest"]["start"]
    path = str(ROOT / "assets" / "data" / "spx_sp500_index.csv")
    strategy_ckpt = RunStore(pipeline["db"]).checkpoint(pipeline["strategy"]["run_id"], best=True)["path"]
    for argv in (["--run", pipeline["strategy"]["run_id"], "--data", path],
                 ["--checkpoint", strategy_ckpt, "--data", "spx"]):
        code, out = run_cli(capsys, "--db", db, "backtest", *argv)
        assert code == 0 and out["start"] == expected, argv


def test_describe_reports_preset_sizes(capsys):
    code, out = run_cli(capsys, "describe", "--preset", "small")
    assert code == 0
    assert out["preset"] == "small" and 9e6 <= out["parameters"] <= 11e6
    assert {"d_model", "layers", "heads"} <= set(out)
