"""Forecast metrics in return units agree with hand computations and stay quiet on degenerate input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from engine.evaluation import (
    BAND_LEVELS,
    average_ranks,
    coverage,
    cross_section,
    evaluate_forecasts,
    horizon_scores,
    pinball,
    pinball_skill,
    pit,
    pooled_scores,
    row_rank_pearson,
)


@pytest.fixture(autouse=True)
def warnings_fail():
    """A metric that divides by zero must say NaN, not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_scores_match_a_hand_computation():
    pred = np.array([0.01, -0.02, 0.03, 0.0, np.nan])
    real = np.array([0.02, -0.01, -0.01, 0.01, 0.05])  # the last day has no forecast: not counted
    [row] = horizon_scores(pred[:, None], real[:, None], horizons=[5])
    assert row["h"] == 5 and row["days"] == 4
    assert row["mae"] == pytest.approx((0.01 + 0.01 + 0.04 + 0.01) / 4)
    assert row["naive_mae"] == pytest.approx((0.02 + 0.01 + 0.01 + 0.01) / 4)
    assert row["mae_ratio"] == pytest.approx(0.0175 / 0.0125)
    assert row["hit_rate"] == 0.5  # (+,+) and (-,-) hit; (+,-) misses; a zero forecast never hits
    assert row["up_rate"] == 0.5
    assert row["ic"] == pytest.approx(np.corrcoef(pred[:4], real[:4])[0, 1])
    # ranks by hand: pred [3, 1, 4, 2]; realised ties share 1.5
    assert row["rank_ic"] == pytest.approx(np.corrcoef([3, 1, 4, 2], [4, 1.5, 1.5, 3])[0, 1])


def test_days_without_a_move_are_left_out_of_hit_and_up_rates():
    [row] = horizon_scores(np.array([[0.01], [0.02], [-0.01]]), np.array([[0.0], [0.01], [-0.03]]))
    assert row["days"] == 3 and row["hit_rate"] == 1.0 and row["up_rate"] == 0.5


def test_the_naive_forecast_scores_a_ratio_of_one_and_no_correlation():
    real = np.random.default_rng(0).normal(0, 0.01, (200, 7))
    rows = horizon_scores(np.zeros_like(real), real)
    assert [r["h"] for r in rows] == list(range(1, 8))
    for r in rows:
        assert r["mae_ratio"] == 1.0 and r["days"] == 200 and r["hit_rate"] == 0.0
        assert math.isnan(r["ic"]) and math.isnan(r["rank_ic"])


def test_a_constant_or_empty_forecast_is_nan_not_a_warning():
    real = np.random.default_rng(1).normal(0, 0.01, (50, 2))
    [flat, _] = horizon_scores(np.full_like(real, 0.003), real)
    assert math.isnan(flat["ic"]) and math.isnan(flat["rank_ic"]) and flat["mae_ratio"] > 0
    [empty] = horizon_scores(np.full((4, 1), np.nan), np.ones((4, 1)))
    assert empty["days"] == 0 and all(math.isnan(empty[k]) for k in ("mae_ratio", "ic", "rank_ic", "hit_rate"))


def test_a_planted_signal_gives_its_known_correlation():
    rng = np.random.default_rng(7)
    pred = rng.normal(0, 1, (20_000, 2))
    real = 0.1 * pred + rng.normal(0, 0.1, pred.shape)
    rho = 0.1 / math.sqrt(0.1**2 + 0.1**2)  # 0.707
    for row in horizon_scores(pred, real):
        assert row["ic"] == pytest.approx(rho, abs=0.015)
        assert row["rank_ic"] == pytest.approx(6 / math.pi * math.asin(rho / 2), abs=0.015)  # Gaussian Spearman
        assert row["mae_ratio"] > 1  # right direction, wrong scale: worse than zero in MAE
        assert row["hit_rate"] == pytest.approx(0.5 + math.asin(rho) / math.pi, abs=0.015)


def test_average_ranks_match_scipy_with_ties_and_gaps():
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(3).integers(0, 6, (30, 12)).astype(float)
    x[np.random.default_rng(4).random(x.shape) < 0.2] = np.nan
    expected = np.vstack([stats.rankdata(row, nan_policy="omit") for row in x])
    np.testing.assert_allclose(average_ranks(x), expected)
    y = x + np.random.default_rng(5).normal(size=x.shape)
    ours = row_rank_pearson(x, y)
    for d in range(5):
        both = ~np.isnan(x[d])
        assert ours[d] == pytest.approx(stats.spearmanr(x[d, both], y[d, both]).statistic)


def test_pooled_figures_average_instruments_not_days():
    rng = np.random.default_rng(2)
    real_a, real_b = rng.normal(0, 0.01, (300, 1)), rng.normal(0, 0.01, (30, 1))
    a, b = horizon_scores(0.5 * real_a, real_a), horizon_scores(np.zeros_like(real_b), real_b)
    [pooled] = pooled_scores({"A": {"horizons": a}, "B": {"horizons": b}})["horizons"]
    assert pooled["instruments"] == 2 and pooled["days"] == 330
    assert pooled["mae_ratio"] == pytest.approx((a[0]["mae_ratio"] + 1.0) / 2)
    assert pooled["ic"] == pytest.approx(1.0)  # B's IC is undefined, not zero: left out of the mean


def test_cross_section_by_hand():
    pred = np.array([[1, 2, 3, 4, 5, np.nan], [5, 4, 3, 2, 1, 0]], dtype=float)
    real = np.array([[0.01, 0.02, 0.03, 0.05, 0.04, 0.9], [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]])
    out = cross_section(pred, real)
    ic = [np.corrcoef(pred[0, :5], real[0, :5])[0, 1], np.corrcoef(pred[1], real[1])[0, 1]]
    assert out["days"] == 2
    assert out["ic"] == pytest.approx(np.mean(ic))
    assert out["rank_ic"] == pytest.approx((0.9 - 1.0) / 2)  # day 1: one swapped pair of 5 -> 0.9
    assert out["icir"] == pytest.approx(np.mean(ic) / np.std(ic, ddof=1))
    # day 0: 5 names, k=1: top pred 5 -> 0.04, bottom pred 1 -> 0.01; day 1: 6 names, k=1: 0.01 - 0.06
    assert out["top_minus_bottom"] == pytest.approx(((0.04 - 0.01) + (0.01 - 0.06)) / 2)


def test_cross_section_skips_thin_days_and_flat_forecasts_quietly():
    real = np.random.default_rng(0).normal(size=(10, 8))
    pred = np.full_like(real, 0.2)
    out = cross_section(pred, real)
    assert out["days"] == 10 and all(math.isnan(out[k]) for k in ("ic", "rank_ic", "icir", "top_minus_bottom"))
    thin = np.where(np.arange(8) < 4, real, np.nan)  # 4 names a day: fewer than min_names
    assert cross_section(thin, real)["days"] == 0 and math.isnan(cross_section(thin, real)["ic"])


def test_a_planted_cross_sectional_signal_ranks():
    rng = np.random.default_rng(11)
    pred = rng.normal(size=(400, 50))
    real = 0.1 * pred + rng.normal(0, 0.1, pred.shape)
    real[rng.random(real.shape) < 0.1] = np.nan  # instruments missing on some days
    out = cross_section(pred, real)
    assert out["days"] == 400
    assert out["ic"] == pytest.approx(1 / math.sqrt(2), abs=0.02) and out["icir"] > 5
    # top quintile of a N(0,1) score averages ~1.40 sd, bottom ~-1.40: spread 0.1 * 2.8
    assert out["top_minus_bottom"] == pytest.approx(0.28, abs=0.02)


def test_report_keys_follow_the_cli_contract():
    rng = np.random.default_rng(5)
    pred, real = rng.normal(size=(60, 6, 7)), rng.normal(size=(60, 6, 7))
    report = evaluate_forecasts({f"I{k}": (pred[:, k], real[:, k]) for k in range(6)}, panel=(pred, real))
    assert set(report) == {"instruments", "pooled", "cross_section"}
    row = report["instruments"]["I0"]["horizons"][6]
    assert row["h"] == 7 and {"h", "days", "mae_ratio", "ic", "rank_ic", "hit_rate", "up_rate"} <= set(row)
    section = report["cross_section"]["horizons"]
    assert [s["h"] for s in section] == list(range(1, 8))
    assert {"h", "days", "rank_ic", "ic", "icir", "top_minus_bottom"} <= set(section[0])
    assert evaluate_forecasts({"A": (pred[:, 0], real[:, 0])})["cross_section"] is None


def test_pinball_matches_a_hand_computation():
    levels = (0.1, 0.9)
    q = np.array([[[-1.0, 1.0]], [[0.0, 2.0]], [[np.nan, 1.0]]])  # (n=3, H=1, Q=2)
    realised = np.array([[2.0], [-1.0], [0.0]])
    # day 0: 0.1 * 3 and 0.9 * 1; day 1: 0.9 * 1 and 0.1 * 3; day 2 has a NaN quantile: left out
    assert pinball(q, realised, levels) == pytest.approx([(0.3 + 0.9 + 0.9 + 0.3) / 4])
    assert pinball_skill(np.array([1.0, 2.0, 1.0]), np.array([2.0, 2.0, 0.0]))[:2] == pytest.approx([0.5, 0.0])
    assert math.isnan(pinball_skill(np.array([1.0]), np.array([0.0]))[0])


def test_coverage_and_pit_by_hand():
    q = np.tile(np.array(BAND_LEVELS) * 10 - 5, (4, 1, 1))  # levels 0.05..0.95 at -4.5..4.5
    realised = np.array([[-4.7], [0.0], [3.0], [np.nan]])
    cover = coverage(q, realised, BAND_LEVELS)
    assert cover["0.5"] == pytest.approx([1 / 3]) and cover["0.9"] == pytest.approx([2 / 3])
    u = pit(q, realised, BAND_LEVELS)[:, 0]
    assert u[0] == pytest.approx(0.025) and u[1] == pytest.approx(0.5) and u[2] == pytest.approx(0.8)
    assert math.isnan(u[3])
    assert coverage(q[..., [1, 3, 5]], realised, (0.1, 0.5, 0.9))["0.5"] is None  # levels it lacks


def test_evaluate_forecasts_adds_distribution_keys_null_for_a_point_model():
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (300, 2))
    truth = np.broadcast_to(np.array([-1.2816, 0.0, 1.2816]), (300, 2, 3))
    wide = truth * 3
    refs = {"climatology": wide, "ewma": wide, "garch": truth}
    levels = (0.1, 0.5, 0.9)
    report = evaluate_forecasts({"A": (real * 0, real), "B": (real * 0, real)}, quantiles={"A": truth, "B": None},
                                references={"A": refs, "B": refs}, levels=levels)
    a, b = report["instruments"]["A"], report["instruments"]["B"]
    assert set(a["horizons"][0]["pinball_skill"]) == {"climatology", "ewma", "garch"}
    assert a["horizons"][0]["pinball_skill"]["climatology"] > 0.2
    assert a["horizons"][0]["pinball_skill"]["garch"] == pytest.approx(0.0)
    assert set(a["horizons"][0]["coverage"]) == {"0.5", "0.8", "0.9"}
    assert a["horizons"][0]["coverage"]["0.8"] == pytest.approx(0.8, abs=0.07)
    assert len(a["pit"]["fraction"]) == 2 and len(a["pit"]["edges"]) == 11
    assert b["horizons"][0]["pinball_skill"] is None and b["horizons"][0]["coverage"] is None and b["pit"] is None
    assert b["baselines"]["garch"]["horizons"][0]["pinball_skill"]["climatology"] > 0.2
    pooled = report["pooled"]["horizons"][0]
    assert pooled["pinball_skill"]["climatology"] == pytest.approx(a["horizons"][0]["pinball_skill"]["climatology"])
