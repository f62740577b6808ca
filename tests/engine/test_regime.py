"""Regime labels: plausible on real data, causal, vectorised like a per-row reference, numpy == torch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from engine.regime import (
    BEAR,
    BULL,
    SIDEWAYS,
    RegimeThresholds,
    causal_labels,
    hindsight_labels,
    regime_names,
    vote,
)

DATA = "assets/data/sh000001_sse_composite.csv"


def sse_close() -> np.ndarray:
    try:
        from engine.data import load_bars
    except ImportError:
        return pd.read_csv(DATA, thousands=",")["收盘"].to_numpy(dtype=np.float64)
    return load_bars("sse").frame["close"].to_numpy()


@pytest.fixture(scope="module")
def sse() -> np.ndarray:
    return sse_close()


def test_sse_has_a_causal_label_per_day_and_all_regimes_occur(sse):
    labels = causal_labels(sse)
    assert labels.dtype == np.int8 and labels.shape == sse.shape
    known = labels >= 0
    first = int(np.argmax(known))
    assert first < 120 and known[first:].all()  # only the warm-up lacks a label
    shares = np.bincount(labels[known], minlength=3) / known.sum()
    assert 0.15 < shares[BULL] < 0.6 and 0.15 < shares[BEAR] < 0.6
    assert 0.15 < shares[SIDEWAYS] < 0.6


def test_changing_future_bars_never_changes_a_past_label(sse):
    close = sse[:2500]
    labels = causal_labels(close)
    rng = np.random.default_rng(1)
    for cut in (150, 700, 1800, 2498):
        future = close.copy()
        future[cut + 1:] *= np.exp(np.cumsum(rng.normal(0, 0.05, close.size - cut - 1)))
        np.testing.assert_array_equal(causal_labels(future)[: cut + 1], labels[: cut + 1])
        np.testing.assert_array_equal(causal_labels(close[: cut + 1]), labels[: cut + 1])


def reference_vote(row: np.ndarray, low: float, high: float, th: RegimeThresholds) -> int:
    """One period at a time, written out plainly."""
    n = len(row)
    mean = sum(row) / n
    std = (sum((x - mean) ** 2 for x in row) / n) ** 0.5
    short = sum(row[-th.short_days:]) / th.short_days

    def side(x, lo, hi):
        return 1 if x > hi else (-1 if x < lo else 0)

    votes = [
        side(mean, -th.simple_t * std / n**0.5, th.simple_t * std / n**0.5),
        side(short - mean, -th.technical_margin * std, th.technical_margin * std),
        side(mean, low, high),
    ]
    if votes.count(1) >= 2:
        return BULL
    if votes.count(-1) >= 2:
        return BEAR
    return SIDEWAYS


def random_periods(batch: int = 300, length: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    drift = rng.normal(0, 0.004, (batch, 1))
    return drift + rng.normal(0, 0.015, (batch, length))


def test_hindsight_vote_equals_a_per_row_reference():
    th = RegimeThresholds()
    returns = random_periods()
    low, high = np.quantile(returns.mean(1), [th.adaptive_low, th.adaptive_high])
    expected = [reference_vote(row, low, high, th) for row in returns]
    labels = hindsight_labels(returns, th)
    np.testing.assert_array_equal(labels, expected)
    assert set(labels) == {BEAR, SIDEWAYS, BULL}


def test_torch_and_numpy_give_the_same_labels():
    returns = random_periods()
    labels = vote(returns)
    tensor = vote(torch.from_numpy(returns))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.int64
    np.testing.assert_array_equal(tensor.numpy(), labels)
    bounds = (np.full(len(returns), -0.001), np.full(len(returns), 0.002))
    np.testing.assert_array_equal(
        vote(torch.from_numpy(returns), bounds=tuple(map(torch.from_numpy, bounds))).numpy(),
        vote(returns, bounds=bounds))


def test_three_different_votes_give_sideways():
    # rising period (simple: bull) whose last week fades (technical: bear)
    row = np.array([[0.02] * 15 + [-0.004] * 5])
    mean = row.mean()
    assert vote(row, bounds=(np.array([mean - 1]), np.array([mean + 1])))[0] == SIDEWAYS  # adaptive: sideways
    assert vote(row, bounds=(np.array([mean - 1]), np.array([mean - 0.5])))[0] == BULL  # adaptive: bull


def test_flat_prices_are_sideways_and_names_map_unknown_to_empty():
    labels = causal_labels(np.full(400, 100.0))
    assert set(labels[labels >= 0]) == {SIDEWAYS}
    assert list(regime_names(np.array([-1, 0, 1, 2]))) == ["", "bear", "sideways", "bull"]
