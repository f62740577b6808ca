"""The distributional price heads: non-crossing quantiles whatever the weights, the pinball loss and
the Student-t likelihood against independent computations, and calibration on simulated GARCH data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from engine.config import QUANTILES, DataConfig, PriceModelConfig, TrainConfig, override
from engine.data import load_bars
from engine.events import run_to_end
from engine.forecast import forecast_quantiles, load_price_model, model_windows
from engine.losses import pinball_loss, student_t_nll
from engine.models import PriceNetwork, monotone_quantiles, output_quantiles
from engine.store import RunStore
from engine.training.price import train_price

SMALL = override(PriceModelConfig(), d_model=16, n_layers=1, n_heads=2, kv_lora_rank=8, qk_nope_head_dim=4,
                 qk_rope_head_dim=4, v_head_dim=4, ffn_hidden=32, window=30, dropout=0.0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-3, 1e3))
def test_quantiles_never_cross_for_any_raw_outputs(seed, scale):
    raw = torch.randn(8, 7, len(QUANTILES), generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64) * scale
    q = monotone_quantiles(raw, QUANTILES.index(0.5))
    assert (q.diff(dim=-1) >= 0).all()
    assert torch.equal(q[..., QUANTILES.index(0.5)], raw[..., QUANTILES.index(0.5)])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), gain=st.floats(0.1, 50.0))
def test_network_quantiles_never_cross_for_random_weights_and_inputs(seed, gain):
    torch.manual_seed(seed)
    net = PriceNetwork(SMALL).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, gain / max(p.shape[-1], 1) ** 0.5)
        out = net(torch.randn(4, SMALL.window, SMALL.n_features) * gain)
    assert (out.quantiles.diff(dim=-1) >= 0).all()
    torch.testing.assert_close(out.prices, out.quantiles[..., QUANTILES.index(0.5)])


def test_pinball_loss_equals_a_hand_computation():
    q = torch.tensor([[[-1.0, 0.0, 2.0]]])  # one sample, one horizon, levels 0.1 / 0.5 / 0.9
    y = torch.tensor([[0.5]])
    # y above -1 by 1.5: 0.1 * 1.5; above 0 by 0.5: 0.5 * 0.5; below 2 by 1.5: (1 - 0.9) * 1.5
    expected = (0.15 + 0.25 + 0.15) / 3
    assert pinball_loss(q, y, (0.1, 0.5, 0.9)).item() == pytest.approx(expected)


def test_student_t_nll_equals_torch_log_prob():
    g = torch.Generator().manual_seed(3)
    loc, y = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g) * 3
    scale = torch.rand(5, 7, generator=g) + 0.1
    df = torch.rand(5, 7, generator=g) * 20 + 2.0
    expected = -torch.distributions.StudentT(df, loc, scale).log_prob(y).mean()
    torch.testing.assert_close(student_t_nll(loc, scale, df, y), expected)


def test_student_t_quantiles_come_from_its_inverse_cdf():
    net = PriceNetwork(override(SMALL, head="student_t")).eval()
    with torch.no_grad():
        out = net(torch.randn(3, SMALL.window, SMALL.n_features))
    q = output_quantiles(out)
    p = out.t_params.double().numpy()
    np.testing.assert_allclose(q[..., 1], stats.t.ppf(0.1, p[..., 2], p[..., 0], p[..., 1]))
    assert (np.diff(q, axis=-1) > 0).all()
    np.testing.assert_allclose(q[..., QUANTILES.index(0.5)], out.prices.double().numpy(), atol=1e-6)


def simulated_garch_csv(path: Path, days: int = 2500, seed: int = 0) -> Path:
    """Closes from GARCH(1,1) log returns (omega 2e-6, alpha 0.08, beta 0.9, Student-t(6) shocks) with
    a drift of 0.2 conditional sigma a day, which a model that learnt nothing would miss."""
    rng = np.random.default_rng(seed)
    shocks = rng.standard_t(6, days) / np.sqrt(6 / 4)
    var, returns = 1e-4, np.empty(days)
    for t in range(days):  # the GARCH recursion is sequential by definition (simulation, not the engine)
        returns[t] = np.sqrt(var) * (shocks[t] + 0.2)
        var = 2e-6 + 0.08 * returns[t] ** 2 + 0.9 * var
    close = 100 * np.exp(np.cumsum(returns))
    prev = np.r_[100.0, close[:-1]]
    spread = np.abs(returns) + 0.002
    frame = pd.DataFrame({"date": pd.bdate_range("2000-01-03", periods=days).strftime("%Y-%m-%d"),
                          "open": prev, "high": np.maximum(prev, close) * (1 + spread / 2),
                          "low": np.minimum(prev, close) * (1 - spread / 2), "close": close,
                          "volume": rng.integers(1_000, 2_000, days)})
    frame.to_csv(path / "garch.csv", index=False)
    return path / "garch.csv"


@pytest.mark.slow
def test_quantile_head_is_calibrated_on_simulated_garch_days(tmp_path):
    """Trained briefly on vol-scaled GARCH data, the 10-90 % band holds about 80 % of held-out days (0.77-0.81
    on seeds 0-2), and the quantiles beat (pinball) an unconditional standard normal of the vol-scaled
    return, close to where the head starts."""
    csv = simulated_garch_csv(tmp_path)
    data = DataConfig(window=SMALL.window, val_fraction=0.1, test_fraction=0.25)
    train = TrainConfig(max_steps=250, batch_size=64, lr=3e-3, warmup_steps=20, eval_every=125,
                        precision="fp32", device="cpu", seed=0)
    store = RunStore(tmp_path / "runs.db")
    finished = run_to_end(train_price([str(csv)], model_cfg=SMALL, data_cfg=data, train_cfg=train, store=store,
                                      runs_dir=tmp_path / "runs"))
    assert finished.status == "finished", finished.error
    loaded = load_price_model(finished.run_id, store)
    ws = model_windows(loaded, load_bars(csv))
    test_start = pd.Timestamp(loaded.data_cfg.test_start)
    ends = np.flatnonzero((ws.dates >= test_start) & (np.arange(len(ws)) + 7 < len(ws)))
    result = forecast_quantiles(loaded, ws, ends)
    realised = ws.targets(ends)
    lo, hi = (result.quantile_returns[..., QUANTILES.index(level)] for level in (0.1, 0.9))
    coverage = ((lo <= realised) & (realised <= hi)).mean()
    assert 0.72 <= coverage <= 0.88, coverage
    units = ws.units(ends)
    normal = stats.norm.ppf(QUANTILES)[None, None, :] * units[..., None]
    z = torch.from_numpy(realised / units)
    learnt = pinball_loss(torch.from_numpy(result.quantile_returns / units[..., None]), z, QUANTILES)
    # trained: 0.90-0.92 of the normal's on seeds 0-2; the untrained head: 0.996-1.002
    assert learnt < 0.96 * pinball_loss(torch.from_numpy(normal / units[..., None]), z, QUANTILES)
