"""`evaluate`: forecast quality of a tiny trained price network on its held-out test period, in
return units, as the CLI prints it and as the job computes it (checked against a hand recomputation
from forecast_many's closes)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from engine import cli
from engine.config import QUANTILES
from engine.data import build_windows, chronological_split
from engine.data.splits import days_after
from engine.evaluation import horizon_scores
from engine.events import CancelToken, Progress, run_to_end
from engine.forecast import forecast_many, forecast_quantiles, load_bars_as_trained, load_price_model, model_windows
from engine.jobs.evaluate import evaluate_job, evaluation_days, out_of_sample_start
from engine.store import RunStore
from tests.engine.helpers import TINY_PRICE_ARGS

ROW_KEYS = {"h", "days", "mae_ratio", "ic", "rank_ic", "hit_rate", "up_rate"}


def call(db, *argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = cli.main(["--db", str(db), *argv])
    return code, buf.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny price run on spx since 2011 (its recorded dataset is "spx")."""
    db = tmp_path_factory.mktemp("evaluate") / "runs.db"
    code, out = call(db, "--json", "train-price", "--data", "spx", "--start", "2011-01-01", "--preset", "tiny",
                     *TINY_PRICE_ARGS, "--max-steps", "8", "--batch-size", "16", "--seed", "5")
    assert code == 0, out
    return db, json.loads(out)


@pytest.fixture(scope="module")
def report(trained):
    db, run = trained
    code, out = call(db, "--json", "evaluate", "--run", run["run_id"])
    assert code == 0, out
    return json.loads(out)


def held_out_first_day(db, run_id: str) -> pd.Timestamp:
    """The test split as training carved it, computed here independently of the job."""
    loaded = load_price_model(run_id, RunStore(db))
    cfg = loaded.data_cfg
    bars = load_bars_as_trained(loaded, "spx")
    ws = build_windows(replace(bars, frame=bars.frame.loc[cfg.start:cfg.end]), cfg.window, cfg.horizon)
    return ws.dates[chronological_split(ws, cfg.val_fraction, cfg.test_fraction, cfg.horizon).test[0]]


def test_json_has_one_row_per_horizon_per_instrument_on_the_trained_dataset_by_default(report):
    assert set(report["instruments"]) == {"S&P 500 index"}
    spx = report["instruments"]["S&P 500 index"]
    assert spx["dataset"] == "spx" and spx["in_sample"] is False
    assert [row["h"] for row in spx["horizons"]] == list(range(1, 8))
    for row in spx["horizons"]:
        assert set(row) >= ROW_KEYS
        assert set(row["pinball_skill"]) == {"climatology", "ewma", "garch"}  # the default quantile head's
        assert set(row["coverage"]) == {"0.5", "0.8", "0.9"}
        assert row["coverage"]["0.5"] <= row["coverage"]["0.8"] <= row["coverage"]["0.9"] <= 1
        assert row["days"] > 100
        assert 0.5 < row["mae_ratio"] < 2 and -1 <= row["ic"] <= 1 and 0 <= row["up_rate"] <= 1
    assert report["cross_section"] is None  # one instrument has no cross-section


def test_the_volatility_baselines_are_scored_on_the_same_days(report):
    spx = report["instruments"]["S&P 500 index"]
    assert len(spx["pit"]["fraction"]) == 7 and all(sum(row) == pytest.approx(1) for row in spx["pit"]["fraction"])
    assert set(spx["baselines"]) == {"climatology", "ewma", "garch"}
    for name in ("ewma", "garch"):
        rows = spx["baselines"][name]["horizons"]
        assert [r["h"] for r in rows] == list(range(1, 8))
        for row, model_row in zip(rows, spx["horizons"]):
            assert row["days"] == model_row["days"]  # every baseline forecasts every evaluation day
            assert -0.5 < row["pinball_skill"]["climatology"] < 0.5
            assert set(row["coverage"]) == {"0.5", "0.8", "0.9"}
            assert 0.4 < row["coverage"]["0.8"] <= 1.0


def test_default_period_starts_at_the_runs_test_start(trained, report):
    db, run = trained
    loaded = load_price_model(run["run_id"], RunStore(db))
    ws = model_windows(loaded, load_bars_as_trained(loaded, "spx"))
    first, last = report["instruments"]["S&P 500 index"]["period"]
    if loaded.data_cfg.test_start:  # a run with calendar cut dates
        assert pd.Timestamp(first) == ws.dates[days_after(ws, loaded.data_cfg.test_start)[0]]
    else:
        assert pd.Timestamp(first) == held_out_first_day(db, run["run_id"])
    assert last == "2018-12-28"  # the last day with a realised next close


def test_a_run_without_cut_dates_uses_its_held_out_split_and_all_of_an_unseen_series(trained):
    db, run = trained
    loaded = load_price_model(run["run_id"], RunStore(db))
    loaded.data_cfg = replace(loaded.data_cfg, train_end=None, val_end=None, test_start=None)  # an old record
    spx, goog = (load_bars_as_trained(loaded, name) for name in ("spx", "goog"))
    assert out_of_sample_start(loaded, spx) == held_out_first_day(db, run["run_id"])
    assert out_of_sample_start(loaded, goog) is None
    ws = model_windows(loaded, goog)
    assert evaluation_days(ws, None, None, None)[0] == ws.window - 1  # the first full window


def test_job_matches_a_hand_recomputation_from_forecast_many(trained, report):
    db, run = trained
    store = RunStore(db)
    events: list = []
    result = run_to_end(evaluate_job(run["run_id"], ["spx"], store=store), events.append)
    assert result.status == "finished" and any(isinstance(e, Progress) for e in events)
    loaded = load_price_model(run["run_id"], store)
    ws = model_windows(loaded, load_bars_as_trained(loaded, "spx"))
    first, last = result.instruments["S&P 500 index"]["period"]
    ends = ws.ends[(ws.dates[ws.ends] >= pd.Timestamp(first)) & (ws.dates[ws.ends] <= pd.Timestamp(last))]
    pred = np.log(forecast_many(loaded, ws, ends) / ws.close[ends, None])
    expected = horizon_scores(pred, ws.targets(ends))
    got = result.instruments["S&P 500 index"]["horizons"]
    for mine, hand in zip(got, expected):
        assert mine["days"] == hand["days"]
        for key in ("mae_ratio", "ic", "rank_ic", "hit_rate", "up_rate"):
            assert mine[key] == pytest.approx(hand[key], rel=1e-9, abs=1e-12), key
    assert got == report["instruments"]["S&P 500 index"]["horizons"]
    q = forecast_quantiles(loaded, ws, ends)
    lo, hi = QUANTILES.index(0.1), QUANTILES.index(0.9)
    realised = ws.targets(ends)
    ok = np.isfinite(realised)
    inside = (realised >= q.quantile_returns[..., lo]) & (realised <= q.quantile_returns[..., hi])
    for h, row in enumerate(got):
        assert row["coverage"]["0.8"] == pytest.approx(inside[ok[:, h], h].mean(), abs=1e-12)


def test_a_point_head_has_no_distribution_figures(tmp_path):
    db = tmp_path / "runs.db"
    code, out = call(db, "--json", "train-price", "--data", "spx", "--start", "2015-01-01", "--preset", "tiny",
                     *TINY_PRICE_ARGS, "--head", "point", "--max-steps", "2", "--batch-size", "16", "--seed", "5")
    assert code == 0, out
    code, out = call(db, "--json", "evaluate", "--run", json.loads(out)["run_id"])
    assert code == 0, out
    spx = json.loads(out)["instruments"]["S&P 500 index"]
    assert spx["pit"] is None and set(spx["baselines"]) == {"climatology", "ewma", "garch"}
    assert all(row["pinball_skill"] is None and row["coverage"] is None for row in spx["horizons"])


def test_explicit_start_before_the_test_period_is_flagged_in_sample(trained):
    db, run = trained
    code, out = call(db, "--json", "evaluate", "--run", run["run_id"], "--data", "spx",
                     "--start", "2016-01-01", "--end", "2016-12-31")
    assert code == 0, out
    spx = json.loads(out)["instruments"]["S&P 500 index"]
    assert spx["in_sample"] is True and spx["period"][0] >= "2016-01-01" and spx["period"][1] <= "2016-12-31"


def test_an_unseen_instrument_is_scored_out_of_sample_from_a_checkpoint_file(trained):
    db, run = trained
    code, out = call(db, "--json", "evaluate", "--checkpoint", run["best_checkpoint"], "--data", "aapl",
                     "--start", "2012-01-01")
    assert code == 0, out
    report = json.loads(out)
    assert report["run_id"] is None and report["instruments"]["Apple (AAPL)"]["in_sample"] is (
        load_price_model(run["best_checkpoint"]).data_cfg.test_start is not None)  # before the test start


def test_calendar_cut_dates_start_the_default_period_at_test_start(trained):
    db, run = trained
    loaded = load_price_model(run["run_id"], RunStore(db))
    loaded.data_cfg = replace(loaded.data_cfg, test_start="2018-03-01")
    ws = model_windows(loaded, load_bars_as_trained(loaded, "spx"))
    boundary = out_of_sample_start(loaded, load_bars_as_trained(loaded, "spx"))
    assert boundary == pd.Timestamp("2018-03-01")
    days = evaluation_days(ws, boundary, None, None)
    assert ws.dates[days[0]] == pd.Timestamp("2018-03-01")


def test_text_output_is_a_readable_table(trained):
    db, run = trained
    code, out = call(db, "evaluate", "--run", run["run_id"])
    assert code == 0
    assert "S&P 500 index (spx)" in out and "MAE ratio" in out and "out of sample" in out
    assert "model: pinball skill vs climatology" in out and "baselines: pinball skill vs climatology" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 21  # 7 horizons each: model, its distribution, baselines


@pytest.mark.parametrize("argv, names", [
    (["--run", "no-such-run"], "no-such-run"),
    (["--start", "2018-13-01"], "--start"),
    (["--data", "spx", "--start", "2030-01-01"], "S&P 500 index"),
    (["--data", "aapl", "--start", "2014-01-01"], "Apple"),  # its data end in 2013
    (["--data", "goog"], "Google"),  # ends before the run's test period
])
def test_bad_input_exits_2_with_one_paragraph_naming_it(trained, capsys, argv, names):
    db, run = trained
    full = argv if argv[0] == "--run" else ["--run", run["run_id"], *argv]
    code, out = call(db, "--json", "evaluate", *full)
    err = capsys.readouterr().err
    assert code == 2 and out == ""
    assert names in err and "Traceback" not in err and err.strip().count("\n") == 0


def test_a_cancelled_job_returns_no_figures(trained):
    db, run = trained
    token = CancelToken()
    token.cancel()
    result = run_to_end(evaluate_job(run["run_id"], store=RunStore(db), cancel=token))
    assert result.status == "cancelled" and result.instruments == {}
