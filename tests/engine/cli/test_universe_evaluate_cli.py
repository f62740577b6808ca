"""`evaluate` on a universe: the cross-section (model, simple factors, LightGBM) through the CLI, on a
synthetic universe with a planted 5-day reversal whose rank IC is known from the simulation itself."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from tests.engine.cli.test_evaluate_cli import call
from tests.engine.helpers import TINY_PRICE_ARGS

N, DAYS, A = 8, 900, 0.08  # instruments, days, strength of the planted reversal
SECTION_KEYS = {"h", "days", "rank_ic", "ic", "icir", "top_minus_bottom"}


def planted_returns(n: int, days: int, seed: int) -> np.ndarray:
    """[days, n] r_{t+1} = -A (r_t + ... + r_{t-4}) + e_{t+1}: an AR(5) filter of noise, no loop."""
    e = np.random.default_rng(seed).normal(0, 0.01, (days, n))
    return lfilter([1.0], [1.0, *([A] * 5)], e, axis=0)


def known_rank_ic() -> float:
    """The cross-sectional rank IC of -(5-day return) for the next day, from a long simulation:
    (6 / pi) asin(rho / 2) of the Gaussian correlation rho, pooled over a million days."""
    r = planted_returns(1, 1_000_000, 99)[:, 0]
    past5 = pd.Series(r).rolling(5).sum().to_numpy()
    rho = np.corrcoef(-past5[5:-1], r[6:])[0, 1]
    return float(6 / np.pi * np.arcsin(rho / 2))


@pytest.fixture(scope="module")
def universe_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("universe")
    dates = pd.bdate_range("2015-01-01", periods=DAYS)
    closes = 50 * np.exp(np.cumsum(planted_returns(N, DAYS, 1), axis=0))
    table = pd.DataFrame(closes, index=pd.Index(dates, name="Date"), columns=[f"S{k}" for k in range(N)])
    table.to_csv(root / "planted.csv")
    db = root / "runs.db"
    code, out = call(db, "--json", "train-price", "--data", str(root / "planted.csv"), "--preset", "tiny",
                     *TINY_PRICE_ARGS, "--context", "equal_weight", "--target", "excess", "--max-steps", "4",
                     "--batch-size", "16",
                     "--train-end", f"{dates[500]:%Y-%m-%d}", "--val-end", f"{dates[650]:%Y-%m-%d}")
    assert code == 0, out
    run = json.loads(out)
    code, out = call(db, "--json", "evaluate", "--run", run["run_id"])
    assert code == 0, out
    return json.loads(out)


def test_cross_section_reports_every_horizon_for_the_model_factors_and_lightgbm(universe_report):
    section = universe_report["cross_section"]
    assert len(universe_report["instruments"]) == N
    for rows in (section["horizons"], section["lightgbm"]["horizons"],
                 *(f["horizons"] for f in section["factors"].values())):
        assert [r["h"] for r in rows] == list(range(1, 8)) and all(set(r) >= SECTION_KEYS for r in rows)
    assert set(section["factors"]) == {"reversal_5d", "momentum_12_1", "low_vol_60d"}
    days = section["horizons"][0]["days"]
    assert days > 150 and section["factors"]["reversal_5d"]["horizons"][0]["days"] == days  # the same days
    assert len(section["daily"]["dates"]) == len(section["daily"]["rank_ic"]["1"]) >= days


def test_the_planted_reversal_is_found_near_its_known_rank_ic(universe_report):
    reversal = universe_report["cross_section"]["factors"]["reversal_5d"]["horizons"][0]
    known = known_rank_ic()
    assert known > 0.1
    # ~ 250 days of 8 names: the daily rank IC's standard error is about 0.35 / sqrt(250) = 0.02
    assert abs(reversal["rank_ic"] - known) < 0.08
    assert abs(universe_report["cross_section"]["factors"]["momentum_12_1"]["horizons"][0]["rank_ic"]) < 0.1
